// Types of wxgate-miniprogram. Self-contained on purpose: the `wx` they
// describe is the part of the API the client calls, which the global `wx`
// of miniprogram-api-typings (WechatMiniprogram.Wx), Taro's and uni-app's
// all satisfy, without making any of them a dependency.

/** The part of `wx` the client calls. */
export interface WxLike {
  login(options: {
    success?: (res: { code: string; errMsg: string }) => void
    fail?: (err: { errMsg: string }) => void
  }): unknown
  request(options: {
    url: string
    method?: any
    data?: any
    header?: any
    timeout?: number
    dataType?: any
    responseType?: any
    success?: (res: { statusCode: number; data: any; header: any; errMsg: string }) => void
    fail?: (err: { errMsg: string }) => void
  }): unknown
  uploadFile?(options: {
    url: string
    filePath: string
    name: string
    header?: any
    formData?: any
    timeout?: number
    success?: (res: { statusCode: number; data: string; errMsg: string }) => void
    fail?: (err: { errMsg: string }) => void
  }): unknown
  getStorageSync(key: string): any
  setStorageSync(key: string, data: any): void
  removeStorageSync(key: string): void
}

export interface ClientOptions {
  /** The gateway, e.g. `https://api.example.com`; request urls are paths under it. */
  baseURL: string
  /** wxgate's `auth.login_path`. Default `/auth/login`. */
  loginPath?: string
  /** wxgate's `auth.logout_path`. Default `/auth/logout`. */
  logoutPath?: string
  /** Sent with the login, for a gateway that serves several mini-programs. */
  appid?: string
  /** Where the token is kept with `wx.setStorageSync`. Default `wxgate_token`. */
  storageKey?: string
  /** wxgate's `auth.token_header`: `Authorization` (the default) sends `Bearer <token>`, any other name the bare token. */
  tokenHeader?: string
  /** Headers sent with every request (a request's own `header` wins). */
  header?: Record<string, string>
  /** Milliseconds, passed to `wx.request` / `wx.uploadFile` unless a call sets its own. Default 60000. */
  timeout?: number
  /** `wx`, or Taro's / uni-app's equivalent. Default: the global `wx`. */
  wx?: WxLike
}

export type Method = 'GET' | 'POST' | 'PUT' | 'DELETE' | 'PATCH' | 'HEAD' | 'OPTIONS' | 'TRACE' | 'CONNECT'

export interface RequestOptions {
  /** A path under `baseURL` (`/api/orders`), or a full URL that starts with it. */
  url: string
  method?: Method
  data?: string | Record<string, any> | ArrayBuffer
  header?: Record<string, string>
  timeout?: number
  dataType?: 'json' | string
  responseType?: 'text' | 'arraybuffer'
  /** `false`: send no token and log in for nothing (a public route). Default true. */
  auth?: boolean
  /** Anything else is passed to `wx.request` as it is (enableHttp2, enableCache, ...). */
  [option: string]: unknown
}

export interface UploadFileOptions {
  url: string
  filePath: string
  name: string
  formData?: Record<string, any>
  header?: Record<string, string>
  timeout?: number
  auth?: boolean
  [option: string]: unknown
}

export interface Response<T = any> {
  statusCode: number
  data: T
  header: Record<string, string>
}

/** `wx.uploadFile` answers its body as a string. */
export type UploadResponse = Response<string>

/** Every failure: `error` is wxgate's code (or the service's `error` field, or one of the client's own codes), `statusCode` 0 when no HTTP answer came. */
export declare class WxgateError extends Error {
  name: 'WxgateError'
  error:
    | 'invalid_code' | 'code_used' | 'user_blocked' | 'rate_limited'
    | 'token_expired' | 'token_revoked' | 'invalid_token' | 'missing_token'
    | 'wechat_unavailable' | 'wechat_timeout' | 'wechat_error' | 'gateway_misconfigured'
    | 'store_unavailable' | 'invalid_request' | 'not_found' | 'method_not_allowed'
    | 'upstream_unavailable' | 'upstream_timeout'
    | 'wx_login_failed' | 'network_error' | 'timeout' | 'login_failed' | 'logout_failed' | 'http_error'
    | (string & {})
  statusCode: number
  /** The answer's body and headers, when there was an answer. */
  data?: unknown
  header?: Record<string, string>
}

export interface Client {
  /** Logs in now (joining a login in flight); resolves with the new token. */
  login(): Promise<string>
  /** `wx.request` with the token; logs in first when needed. Rejects on a status of 400 or more. */
  request<T = any>(options: RequestOptions): Promise<Response<T>>
  /** `wx.uploadFile` with the token, under the same rules as `request`. */
  uploadFile(options: UploadFileOptions): Promise<UploadResponse>
  /** Logs the token out at the gateway and clears the storage. */
  logout(): Promise<void>
  /** The stored token, or null. */
  getToken(): string | null
}

export declare function createClient(options: ClientOptions): Client

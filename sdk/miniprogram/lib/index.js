'use strict'
// wxgate-miniprogram: the mini-program half of wxgate's login flow.
//
// Plain CommonJS, ES2017 at most and no dependencies, so WeChat's base
// library (and Taro, uni-app, Node) runs it as it is. The rules it keeps
// (CONTRACT.md, "The mini-program client"):
// - one login in flight, however many callers need one;
// - a token that expires within 60 s is renewed before it is sent;
// - a 401 token_expired / token_revoked / invalid_token drops the stored
//   token only if it is the one that request sent, then the request is sent
//   again once, with a token from one shared login at most;
// - a login refused with invalid_code / code_used is tried once more with a
//   fresh wx.login code;
// - every failure rejects with a WxgateError {error, statusCode, message}.
// Nothing here loops: each step runs a fixed number of times at most.

const DEFAULTS = {
  loginPath: '/auth/login',
  logoutPath: '/auth/logout',
  storageKey: 'wxgate_token',
  tokenHeader: 'Authorization',
  timeout: 60000
}

// Renew this long before the token expires, so that a token is never sent
// that runs out on its way or while the upstream works.
const RENEW_BEFORE_MS = 60 * 1000

// The 401s that a new token cures; any other 401 (missing_token, or one the
// business service sends itself) is handed back as it is.
const TOKEN_ERRORS = ['token_expired', 'token_revoked', 'invalid_token']

// Login refusals that a fresh code cures (WeChat 40029 and 40163).
const CODE_ERRORS = ['invalid_code', 'code_used']

class WxgateError extends Error {
  constructor (error, statusCode, message, response) {
    super(message)
    this.name = 'WxgateError'
    this.error = error
    this.statusCode = statusCode
    if (response) {
      this.data = response.data
      this.header = response.header
    }
  }
}

// The login in flight per wx and per stored token, shared by every client
// made on them: a page that makes its own client still joins the login
// that another one started.
const flights = new WeakMap()

function createClient (options) {
  const opts = Object.assign({}, DEFAULTS)
  for (const name of Object.keys(options || {})) {
    if (options[name] !== undefined) opts[name] = options[name]
  }
  if (typeof opts.baseURL !== 'string' || !/^https?:\/\//.test(opts.baseURL)) {
    throw new TypeError('wxgate-miniprogram: baseURL must be an http(s) URL')
  }
  // `wx` is a global in the mini-program; Taro, uni-app and tests pass theirs.
  const wx = opts.wx || globalWx()
  if (!wx || typeof wx.request !== 'function') {
    throw new TypeError('wxgate-miniprogram: no wx; pass createClient({ wx })')
  }
  const baseURL = opts.baseURL.replace(/\/+$/, '')
  const bearer = String(opts.tokenHeader).toLowerCase() === 'authorization'
  if (!flights.has(wx)) flights.set(wx, {})
  const inFlight = flights.get(wx)
  const flightKey = baseURL + '#' + opts.storageKey

  // The stored entry: {token, expiresAt} (ms, this device's clock), or null.
  function readStored () {
    let value
    try {
      value = wx.getStorageSync(opts.storageKey)
    } catch (e) {
      return null
    }
    if (typeof value === 'string' && value) return { token: value }
    if (value && typeof value.token === 'string' && value.token) return value
    return null
  }

  function store (entry) {
    wx.setStorageSync(opts.storageKey, entry)
  }

  function clearStored () {
    try {
      wx.removeStorageSync(opts.storageKey)
    } catch (e) {
      store('')
    }
  }

  function getToken () {
    const entry = readStored()
    return entry ? entry.token : null
  }

  // expiresAt comes from the login answer's expires_in, counted on this
  // device's clock: unlike the JWT's exp, it is right even when the phone's
  // clock is not. A token stored without it falls back to exp.
  function usable (entry) {
    if (!entry) return false
    let expiresAt = entry.expiresAt
    if (typeof expiresAt !== 'number') {
      const exp = jwtExp(entry.token)
      if (exp === null) return true // opaque, no expiry known: let the gateway judge
      expiresAt = exp * 1000
    }
    return expiresAt - Date.now() > RENEW_BEFORE_MS
  }

  function url (path) {
    if (typeof path !== 'string') throw new WxgateError('invalid_request', 0, 'url must be a string')
    if (path.charAt(0) === '/') return baseURL + path
    // The token goes to the gateway only, never to another host.
    if (path === baseURL || path.indexOf(baseURL + '/') === 0 || path.indexOf(baseURL + '?') === 0) return path
    throw new WxgateError('invalid_request', 0, 'url must be a path or start with baseURL: ' + path)
  }

  // One wx call as a promise; a fail callback becomes a WxgateError.
  function call (name, params) {
    return new Promise(function (resolve, reject) {
      wx[name](Object.assign({}, params, {
        success: resolve,
        fail: function (err) {
          const msg = (err && err.errMsg) || name + ':fail'
          const code = name === 'login' ? 'wx_login_failed' : /timeout/i.test(msg) ? 'timeout' : 'network_error'
          reject(new WxgateError(code, 0, msg))
        }
      }))
    })
  }

  async function loginOnce () {
    const got = await call('login', {})
    if (!got || !got.code) throw new WxgateError('wx_login_failed', 0, (got && got.errMsg) || 'wx.login gave no code')
    const body = { code: got.code }
    if (opts.appid) body.appid = opts.appid
    const res = await call('request', {
      url: baseURL + opts.loginPath,
      method: 'POST',
      header: Object.assign({}, opts.header, { 'content-type': 'application/json' }),
      data: body,
      dataType: 'json',
      timeout: opts.timeout
    })
    const data = parsed(res.data)
    if (res.statusCode !== 200 || !data || typeof data.access_token !== 'string') {
      throw errorOf(res, 'login_failed')
    }
    const entry = { token: data.access_token }
    if (typeof data.expires_in === 'number') entry.expiresAt = Date.now() + data.expires_in * 1000
    store(entry)
    return entry.token
  }

  // Logs in now, joining the login in flight if there is one. A code that
  // WeChat refused is replaced once; any other failure ends it.
  function login () {
    if (!inFlight[flightKey]) {
      const done = function () { delete inFlight[flightKey] }
      const flight = loginOnce().catch(function (e) {
        if (CODE_ERRORS.indexOf(e.error) >= 0) return loginOnce()
        throw e
      })
      inFlight[flightKey] = flight
      flight.then(done, done)
    }
    return inFlight[flightKey]
  }

  // The stored token if it is good for more than 60 s, else a new one.
  function token () {
    const entry = readStored()
    return usable(entry) ? Promise.resolve(entry.token) : login()
  }

  function send (name, params, tok) {
    const header = Object.assign({}, opts.header, params.header)
    if (tok) {
      // One token header, whatever the case of a name the caller set.
      const lower = String(opts.tokenHeader).toLowerCase()
      for (const name of Object.keys(header)) {
        if (name.toLowerCase() === lower) delete header[name]
      }
      header[opts.tokenHeader] = bearer ? 'Bearer ' + tok : tok
    }
    const out = Object.assign({ timeout: opts.timeout }, params, { url: url(params.url), header: header })
    delete out.auth
    return call(name, out)
  }

  async function authorized (name, params) {
    if (!params || typeof params !== 'object') throw new WxgateError('invalid_request', 0, name + ' needs an options object')
    url(params.url) // a bad url fails before any login
    if (params.auth === false) return settle(await send(name, params, null))
    let sent = await token()
    let res = await send(name, params, sent)
    if (res.statusCode === 401 && TOKEN_ERRORS.indexOf(errorCode(res)) >= 0) {
      // A token stored since this request left is newer: keep it.
      if (getToken() === sent) clearStored()
      sent = await token()
      res = await send(name, params, sent)
    }
    return settle(res)
  }

  async function logout () {
    // A login in flight would store its token after this logout.
    if (inFlight[flightKey]) await inFlight[flightKey].catch(function () {})
    const tok = getToken()
    clearStored()
    if (!tok) return
    const res = await send('request', { url: opts.logoutPath, method: 'POST' }, tok)
    // 401: the gateway refuses the token already, which is what was asked.
    if (res.statusCode >= 300 && res.statusCode !== 401) throw errorOf(res, 'logout_failed')
  }

  return {
    login: login,
    logout: logout,
    getToken: getToken,
    request: function (params) { return authorized('request', params) },
    uploadFile: function (params) { return authorized('uploadFile', params) }
  }
}

// The mini-program's global `wx`, where there is one.
function globalWx () {
  return typeof wx === 'undefined' ? undefined : wx // eslint-disable-line no-undef
}

function settle (res) {
  if (res.statusCode >= 200 && res.statusCode < 400) {
    return { statusCode: res.statusCode, data: res.data, header: res.header || {} }
  }
  throw errorOf(res, 'http_error')
}

// wx.uploadFile hands back its body as a string; wx.request parses JSON.
function parsed (data) {
  if (typeof data !== 'string') return data
  try {
    return JSON.parse(data)
  } catch (e) {
    return null
  }
}

function errorCode (res) {
  const data = parsed(res.data)
  return data && typeof data.error === 'string' ? data.error : null
}

function errorOf (res, fallback) {
  const data = parsed(res.data)
  const message = data && typeof data.message === 'string' ? data.message : 'HTTP ' + res.statusCode
  return new WxgateError(errorCode(res) || fallback, res.statusCode, message, res)
}

// The `exp` claim of a JWT, or null. No atob in every base library, hence
// the small decoder; `exp` is ASCII, so bytes as Latin-1 are enough.
function jwtExp (tok) {
  const part = String(tok).split('.')[1]
  if (!part) return null
  const abc = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_'
  let bits = 0
  let value = 0
  let text = ''
  for (let i = 0; i < part.length; i++) {
    const n = abc.indexOf(part.charAt(i))
    if (n < 0) return null
    value = (value << 6) | n
    bits += 6
    if (bits >= 8) {
      bits -= 8
      text += String.fromCharCode((value >> bits) & 0xff)
    }
  }
  try {
    const exp = JSON.parse(text).exp
    return typeof exp === 'number' ? exp : null
  } catch (e) {
    return null
  }
}

module.exports = { createClient: createClient, WxgateError: WxgateError }

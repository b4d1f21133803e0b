// Compiled (never run) by types.test.js: the declarations fit the global
// `wx` of miniprogram-api-typings and the way the README uses the client.
import { createClient, WxgateError, Response } from '../..'

interface Orders {
  orders: number[]
}

export async function usage (): Promise<void> {
  const api = createClient({ baseURL: 'https://api.example.com', wx, appid: 'wx0123456789abcdef', timeout: 10000 })
  const token: string = await api.login()
  const res: Response<Orders> = await api.request<Orders>({ url: '/api/orders', method: 'GET', data: { page: 1 } })
  const count: number = res.data.orders.length
  const up = await api.uploadFile({ url: '/api/upload', filePath: 'wxfile://tmp/a.jpg', name: 'photo', formData: { album: 'a1' } })
  const body: string = up.data
  try {
    await api.request({ url: '/api/public/news', auth: false, enableHttp2: true })
  } catch (e) {
    if (e instanceof WxgateError) {
      const code: string = e.error
      const status: number = e.statusCode
      console.log(code, status, e.message)
    }
  }
  await api.logout()
  const stored: string | null = api.getToken()
  console.log(token, count, body, stored)

  // @ts-expect-error baseURL is required
  createClient({ wx })
  // @ts-expect-error no such method
  await api.request({ url: '/api/orders', method: 'FETCH' })
}

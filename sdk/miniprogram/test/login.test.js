'use strict'
// Logging in: one login for many callers, the bounded retry of a refused
// code, and the errors a login ends with.

const assert = require('node:assert/strict')
const { describe, it, before, after } = require('node:test')

const { createClient } = require('..')
const h = require('./harness')

describe('login', function () {
  let gw
  before(async function () { gw = await h.startGateway() })
  after(async function () { await gw.stop() })

  function client (wx, extra) {
    return createClient(Object.assign({ baseURL: gw.url, appid: h.APPID, wx: wx }, extra))
  }

  it('5 parallel requests on a cold start share one login', async function () {
    const openid = h.newOpenid()
    const wx = h.makeWx(openid)
    const api = client(wx)
    const okBefore = await gw.loginsOk()
    const answers = await Promise.all([0, 1, 2, 3, 4].map(function (i) {
      return api.request({ url: '/api/orders', data: { page: i } })
    }))
    for (const res of answers) {
      assert.equal(res.statusCode, 200)
      assert.equal(res.data.headers['x-wx-openid'], openid)
    }
    assert.equal(wx.logins, 1, 'wx.login calls')
    assert.equal(wx.sentTo('/auth/login').length, 1, 'login requests')
    assert.equal(await wx.wechatCalls(), 1, 'WeChat calls')
    assert.equal(await gw.loginsOk() - okBefore, 1, 'logins the gateway counted')
    const carried = new Set(wx.sentTo('/api').map(h.bearerOf))
    assert.deepEqual([...carried], [api.getToken()])
  })

  it('two clients on the same wx and storage share the login too', async function () {
    const wx = h.makeWx(h.newOpenid())
    const pageA = client(wx)
    const pageB = client(wx, { loginPath: undefined, timeout: undefined })
    const answers = await Promise.all([pageA.request({ url: '/api/a' }), pageB.request({ url: '/api/b' })])
    assert.deepEqual(answers.map(function (r) { return r.statusCode }), [200, 200])
    assert.equal(wx.logins, 1)
    assert.equal(await wx.wechatCalls(), 1)
    assert.equal(pageA.getToken(), pageB.getToken())
  })

  it('login() logs in even with a token stored, and concurrent calls share it', async function () {
    const wx = h.makeWx(h.newOpenid())
    const api = client(wx)
    const first = await api.login()
    const [a, b] = await Promise.all([api.login(), api.login()])
    assert.equal(a, b)
    assert.notEqual(a, first)
    assert.equal(api.getToken(), a)
    assert.equal(wx.logins, 2)
    assert.equal(await wx.wechatCalls(), 2)
  })

  it('a login that keeps failing stops after one fresh code and rejects with invalid_code', async function () {
    const wx = h.makeWx(h.newOpenid(), ['invalid', 'invalid', 'invalid', 'invalid', 'invalid'])
    const api = client(wx)
    const results = await Promise.allSettled([0, 1, 2, 3, 4].map(function () {
      return api.request({ url: '/api/orders' })
    }))
    for (const r of results) {
      assert.equal(r.status, 'rejected')
      assert.equal(r.reason.error, 'invalid_code')
      assert.equal(r.reason.statusCode, 401)
      assert.equal(typeof r.reason.message, 'string')
    }
    assert.equal(wx.logins, 2, 'wx.login calls: the code and one fresh one')
    assert.equal(await wx.wechatCalls(), 2, 'WeChat calls')
    assert.equal(wx.sentTo('/api').length, 0, 'no request went out without a token')
    assert.equal(api.getToken(), null)
    // The next call tries again, with the same bound.
    await assert.rejects(api.request({ url: '/api/orders' }), { error: 'invalid_code', statusCode: 401 })
    assert.equal(wx.logins, 4)
    assert.equal(await wx.wechatCalls(), 4)
  })

  it('a code already used (code_used) is replaced once by a fresh one, which logs in', async function () {
    const openid = h.newOpenid()
    const wx = h.makeWx(openid, ['used'])
    const api = client(wx)
    const res = await api.request({ url: '/api/orders' })
    assert.equal(res.data.headers['x-wx-openid'], openid)
    assert.equal(wx.logins, 2)
    assert.equal(await wx.wechatCalls(), 2)
    assert.deepEqual(wx.sentTo('/auth/login').map(function (s) { return s.statusCode }), [401, 200])
  })

  it('any other login failure rejects at once: user_blocked, no second code', async function () {
    const openid = h.newOpenid()
    await h.control('block', { openid: openid })
    const wx = h.makeWx(openid)
    const api = client(wx)
    await assert.rejects(api.request({ url: '/api/orders' }), { error: 'user_blocked', statusCode: 403 })
    assert.equal(wx.logins, 1)
    assert.equal(await wx.wechatCalls(), 1)
  })

  it('wx.login failing rejects with wx_login_failed and sends nothing', async function () {
    const wx = h.makeWx(h.newOpenid(), ['fail'])
    const api = client(wx)
    await assert.rejects(api.request({ url: '/api/orders' }), { error: 'wx_login_failed', statusCode: 0 })
    assert.equal(wx.logins, 1)
    assert.equal(wx.sent.length, 0)
  })

  it('an unreachable gateway rejects with network_error after one attempt', async function () {
    const wx = h.makeWx(h.newOpenid())
    const api = createClient({ baseURL: 'http://127.0.0.1:' + await h.closedPort(), wx: wx })
    await assert.rejects(api.request({ url: '/api/orders' }), { error: 'network_error', statusCode: 0 })
    assert.equal(wx.logins, 1)
    assert.equal(wx.sent.length, 1)
  })

  it('auth: false sends no token and needs no login', async function () {
    const wx = h.makeWx(h.newOpenid())
    const api = client(wx)
    const res = await api.request({ url: '/public/news', auth: false })
    assert.equal(res.statusCode, 200)
    assert.equal(res.data.headers.authorization, undefined)
    assert.equal(wx.logins, 0)
  })

  it('a url outside baseURL is refused before any login', async function () {
    const wx = h.makeWx(h.newOpenid())
    const api = client(wx)
    await assert.rejects(api.request({ url: 'https://elsewhere.example/api' }), { error: 'invalid_request' })
    assert.equal(wx.logins, 0)
    assert.equal(wx.sent.length, 0)
  })
})


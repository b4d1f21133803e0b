'use strict'
// Keeping the token: renewal before expiry, the 401s that a new token cures
// (one relogin, one replay, and a late 401 never drops a newer token),
// logout, uploadFile, and the answers that reject.

const assert = require('node:assert/strict')
const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')
const { describe, it, before, after } = require('node:test')

const { createClient } = require('..')
const h = require('./harness')

describe('token', function () {
  let gw
  before(async function () { gw = await h.startGateway() })
  after(async function () { await gw.stop() })

  function client (wx, extra) {
    return createClient(Object.assign({ baseURL: gw.url, appid: h.APPID, wx: wx }, extra))
  }

  it('a revoked token: one relogin and a successful replay', async function () {
    const openid = h.newOpenid()
    const wx = h.makeWx(openid)
    const api = client(wx)
    await api.request({ url: '/api/orders' })
    const old = api.getToken()
    await gw.revoke(old)
    const res = await api.request({ url: '/api/orders', method: 'POST', data: { item: 7 } })
    assert.equal(res.statusCode, 200)
    assert.equal(res.data.headers['x-wx-openid'], openid)
    assert.equal(res.data.body, '{"item":7}', 'the replay carries the body again')
    const sent = wx.sentTo('/api')
    assert.deepEqual(sent.map(function (s) { return s.statusCode }), [200, 401, 200])
    assert.equal(h.bearerOf(sent[1]), old)
    assert.notEqual(h.bearerOf(sent[2]), old)
    assert.equal(h.bearerOf(sent[2]), api.getToken())
    assert.equal(wx.logins, 2)
    assert.equal(await wx.wechatCalls(), 2)
  })

  it('a late 401 keeps the newer token stored since, and replays with it without a login', async function () {
    const wx = h.makeWx(h.newOpenid())
    const api = client(wx)
    await api.login()
    const old = api.getToken()
    await gw.revoke(old)
    // Hold the 401 until another login has stored a newer token.
    let held
    const arrived = new Promise(function (resolve) {
      wx.beforeAnswer = function (sent, answer) {
        if (answer.statusCode !== 401) return
        wx.beforeAnswer = null
        resolve()
        return new Promise(function (release) { held = release })
      }
    })
    const late = api.request({ url: '/api/orders' })
    await arrived
    const newer = await api.login()
    assert.notEqual(newer, old)
    held()
    const res = await late
    assert.equal(res.statusCode, 200)
    assert.equal(api.getToken(), newer, 'the newer token is still stored')
    const sent = wx.sentTo('/api')
    assert.deepEqual(sent.map(h.bearerOf), [old, newer])
    assert.equal(wx.logins, 2, 'the first login and the newer one, none for the 401')
    assert.equal(await wx.wechatCalls(), 2)
  })

  it('many requests refused with one revoked token share one relogin', async function () {
    const wx = h.makeWx(h.newOpenid())
    const api = client(wx)
    await api.login()
    await gw.revoke(api.getToken())
    const answers = await Promise.all([0, 1, 2, 3, 4].map(function () {
      return api.request({ url: '/api/orders' })
    }))
    assert.deepEqual(answers.map(function (r) { return r.statusCode }), [200, 200, 200, 200, 200])
    assert.equal(wx.logins, 2)
    assert.equal(await wx.wechatCalls(), 2)
    assert.equal(wx.sentTo('/api').length, 10, 'five refused, five replayed')
  })

  it('a token the gateway never issued (invalid_token) is replaced', async function () {
    const wx = h.makeWx(h.newOpenid())
    wx.setStorageSync('wxgate_token', { token: 'not.a-wxgate.token' })
    const api = client(wx)
    const res = await api.request({ url: '/api/orders' })
    assert.equal(res.statusCode, 200)
    assert.equal(wx.logins, 1)
    assert.deepEqual(wx.sentTo('/api').map(function (s) { return s.statusCode }), [401, 200])
  })

  it('a request refused again after the relogin is not sent a third time', async function () {
    // /other-app takes tokens of another app only: every token is invalid there.
    const wx = h.makeWx(h.newOpenid())
    const api = client(wx)
    await assert.rejects(api.request({ url: '/other-app/x' }), { error: 'invalid_token', statusCode: 401 })
    assert.equal(wx.sentTo('/other-app').length, 2)
    assert.equal(wx.logins, 2)
    assert.equal(await wx.wechatCalls(), 2)
  })

  it('renews a token that expires within 60 s before sending it', async function () {
    const openid = h.newOpenid()
    const wx = h.makeWx(openid)
    const near = gw.mintToken(openid, '30s')
    wx.setStorageSync('wxgate_token', { token: near })
    const api = client(wx)
    const res = await api.request({ url: '/api/orders' })
    assert.equal(res.statusCode, 200)
    assert.equal(wx.logins, 1)
    assert.equal(await wx.wechatCalls(), 1)
    const sent = wx.sentTo('/api')
    assert.equal(sent.length, 1)
    assert.notEqual(h.bearerOf(sent[0]), near, 'the near-expiry token was never sent')
    assert.equal(h.bearerOf(sent[0]), api.getToken())
  })

  it('sends a token with more than 60 s left as it is', async function () {
    const openid = h.newOpenid()
    const wx = h.makeWx(openid)
    const fresh = gw.mintToken(openid, '10m')
    wx.setStorageSync('wxgate_token', { token: fresh })
    const api = client(wx)
    await api.request({ url: '/api/orders' })
    assert.equal(wx.logins, 0)
    assert.equal(h.bearerOf(wx.sentTo('/api')[0]), fresh)
  })

  it('counts expiry from the login answer on the device clock before the JWT exp', async function () {
    const openid = h.newOpenid()
    const wx = h.makeWx(openid)
    // exp says 10 min; the stored expires_in-based time says 30 s.
    wx.setStorageSync('wxgate_token', { token: gw.mintToken(openid, '10m'), expiresAt: Date.now() + 30000 })
    const api = client(wx)
    await api.request({ url: '/api/orders' })
    assert.equal(wx.logins, 1)
    const stored = wx.getStorageSync('wxgate_token')
    assert.ok(stored.expiresAt - Date.now() > 7000 * 1000, 'expires_in of the new token (2 h) stored')
  })

  it('logout calls the gateway and clears the storage', async function () {
    const wx = h.makeWx(h.newOpenid())
    const api = client(wx)
    await api.request({ url: '/api/orders' })
    const old = api.getToken()
    await api.logout()
    assert.equal(api.getToken(), null)
    assert.equal(wx.getStorageSync('wxgate_token'), '')
    const logout = wx.sentTo('/auth/logout')
    assert.equal(logout.length, 1)
    assert.equal(logout[0].statusCode, 204)
    const direct = await h.fetchText(gw.url + '/api/orders', { headers: { authorization: 'Bearer ' + old } })
    assert.equal(direct.status, 401)
    assert.equal(JSON.parse(direct.body).error, 'token_revoked')
    await api.logout() // nothing stored: no call
    assert.equal(wx.sentTo('/auth/logout').length, 1)
    await api.request({ url: '/api/orders' })
    assert.equal(wx.logins, 2, 'the next request logs in again')
  })

  it('uploadFile carries the token and gets one relogin on a revoked token', async function () {
    const openid = h.newOpenid()
    const wx = h.makeWx(openid)
    const api = client(wx)
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'wxgate-mp-upload-'))
    const file = path.join(dir, 'photo.jpg')
    fs.writeFileSync(file, 'not really a jpeg')
    try {
      const first = await api.uploadFile({ url: '/api/upload', filePath: file, name: 'photo', formData: { album: 'a1' } })
      assert.equal(first.statusCode, 200)
      assert.equal(typeof first.data, 'string', 'wx.uploadFile answers a string')
      const echoed = JSON.parse(first.data)
      assert.equal(echoed.headers['x-wx-openid'], openid)
      assert.match(echoed.body, /not really a jpeg/)
      assert.match(echoed.body, /name="album"\r\n\r\na1/)
      await gw.revoke(api.getToken())
      const second = await api.uploadFile({ url: '/api/upload', filePath: file, name: 'photo' })
      assert.equal(second.statusCode, 200)
      assert.deepEqual(wx.sentTo('/api/upload').map(function (s) { return s.statusCode }), [200, 401, 200])
      assert.equal(wx.logins, 2)
      assert.equal(await wx.wechatCalls(), 2)
    } finally {
      fs.rmSync(dir, { recursive: true, force: true })
    }
  })

  it('an error answer rejects with its error code and status, and the body', async function () {
    const wx = h.makeWx(h.newOpenid())
    const api = client(wx)
    const e = await api.request({ url: '/api/missing' }).catch(function (err) { return err })
    assert.equal(e.name, 'WxgateError')
    assert.equal(e.error, 'no_such_order')
    assert.equal(e.statusCode, 404)
    assert.equal(e.message, 'order 7 does not exist')
    assert.equal(e.data.error, 'no_such_order')
    await assert.rejects(api.request({ url: '/api/broken' }), { error: 'http_error', statusCode: 500 })
    await assert.rejects(api.request({ url: '/nowhere' }), { error: 'not_found', statusCode: 404 })
    assert.equal(wx.logins, 1)
  })

  it('tokenHeader other than Authorization sends the bare token', async function () {
    const wx = h.makeWx(h.newOpenid())
    const api = client(wx, { tokenHeader: 'X-Token', header: { 'X-Client': 'shop', 'x-token': 'stale' } })
    await api.login()
    // This gateway reads Authorization, so it answers missing_token: the
    // client hands that 401 back instead of logging in again.
    await assert.rejects(api.request({ url: '/api/orders' }), { error: 'missing_token', statusCode: 401 })
    const sent = wx.sentTo('/api')[0]
    assert.equal(sent.header['X-Token'], api.getToken())
    assert.equal(sent.header['X-Client'], 'shop')
    assert.equal(sent.header['x-token'], undefined, 'one token header')
    assert.equal(sent.header.Authorization, undefined)
    assert.equal(wx.sentTo('/auth/login')[0].header['X-Client'], 'shop', 'default headers go with the login too')
    assert.equal(wx.logins, 1)
  })
})

'use strict'
// What the node tests run against: the real wxgate binary (started here,
// on 127.0.0.1:0, its address read from its "wxgate started" log line), a
// real upstream (a node HTTP server that echoes what it got), the fake
// WeChat of the Rust tests (its control API mints the codes that the
// stand-in wx.login hands out), and a stand-in `wx` whose request and
// uploadFile do real HTTP. The Rust test tests/it/miniprogram.rs provides
// the environment: run these through
//   cargo test --test it miniprogram -- --include-ignored

const childProcess = require('node:child_process')
const crypto = require('node:crypto')
const fs = require('node:fs')
const http = require('node:http')
const os = require('node:os')
const path = require('node:path')

function env (name) {
  const value = process.env[name]
  if (!value) {
    throw new Error(name + ' is not set: run these tests with `cargo test --test it miniprogram -- --include-ignored`')
  }
  return value
}

const BIN = env('WXGATE_BIN')
const WECHAT = env('WXGATE_TEST_WECHAT')
const CONTROL = env('WXGATE_TEST_CONTROL')
const APPID = env('WXGATE_TEST_APPID')
const APP_SECRET = env('WXGATE_TEST_APP_SECRET')
// A second app, so that a route limited to it refuses APPID's tokens.
const OTHER_APPID = 'wxother0000000001'

// One HTTP exchange: resolves {status, headers, body (string)}.
function fetchText (url, options) {
  const opts = options || {}
  return new Promise(function (resolve, reject) {
    const req = http.request(url, { method: opts.method || 'GET', headers: opts.headers || {} }, function (res) {
      const chunks = []
      res.on('data', function (c) { chunks.push(c) })
      res.on('end', function () {
        resolve({ status: res.statusCode, headers: res.headers, body: Buffer.concat(chunks).toString('utf8') })
      })
      res.on('error', reject)
    })
    req.on('error', reject)
    if (opts.timeout) req.setTimeout(opts.timeout, function () { req.destroy(new Error('timeout')) })
    req.end(opts.body)
  })
}

async function control (verb, body) {
  const res = await fetchText(CONTROL + '/' + verb, { method: 'POST', body: JSON.stringify(body) })
  if (res.status !== 200) throw new Error('control ' + verb + ': ' + res.status)
  return JSON.parse(res.body)
}

// An upstream that answers with what it received. /api/missing answers a
// JSON 404 and /api/broken a text 500, as a business service might.
function startUpstream () {
  const server = http.createServer(function (req, res) {
    const chunks = []
    req.on('data', function (c) { chunks.push(c) })
    req.on('end', function () {
      const body = Buffer.concat(chunks).toString('utf8')
      if (req.url.indexOf('/api/missing') === 0) {
        res.writeHead(404, { 'content-type': 'application/json' })
        return res.end(JSON.stringify({ error: 'no_such_order', message: 'order 7 does not exist' }))
      }
      if (req.url.indexOf('/api/broken') === 0) {
        res.writeHead(500, { 'content-type': 'text/plain' })
        return res.end('it broke')
      }
      res.writeHead(200, { 'content-type': 'application/json' })
      res.end(JSON.stringify({ method: req.method, path: req.url, headers: req.headers, body: body }))
    })
  })
  return new Promise(function (resolve) {
    server.listen(0, '127.0.0.1', function () {
      resolve({ url: 'http://127.0.0.1:' + server.address().port, close: function () { server.close() } })
    })
  })
}

function config (upstream) {
  return [
    '[server]', 'listen = "127.0.0.1:0"', 'shutdown_grace = "2s"',
    '[admin]', 'listen = "127.0.0.1:0"',
    '[wechat]', 'api_base = "' + WECHAT + '"', 'timeout = "2s"',
    '[[apps]]', 'appid = "' + APPID + '"', 'secret = "' + APP_SECRET + '"',
    '[[apps]]', 'appid = "' + OTHER_APPID + '"', 'secret = "other-secret-0000000000"',
    '[auth]', 'login_rate_limit = "off"',
    '[token]', '[[token.keys]]', 'id = "k1"', 'secret = "' + crypto.randomBytes(32).toString('hex') + '"',
    '[[routes]]', 'path = "/public"', 'upstream = "' + upstream + '"', 'auth = "none"',
    '[[routes]]', 'path = "/api"', 'upstream = "' + upstream + '"', 'auth = "required"',
    '[[routes]]', 'path = "/other-app"', 'upstream = "' + upstream + '"', 'auth = "required"',
    'apps = ["' + OTHER_APPID + '"]',
    ''
  ].join('\n')
}

// Starts wxgate and an upstream; resolves once wxgate says it listens.
async function startGateway () {
  const upstream = await startUpstream()
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'wxgate-mp-'))
  const configPath = path.join(dir, 'gateway.toml')
  fs.writeFileSync(configPath, config(upstream.url))
  const child = childProcess.spawn(BIN, ['--config', configPath], {
    env: Object.assign({}, process.env, { RUST_LOG: 'info', NO_COLOR: '1' }),
    stdio: ['ignore', 'ignore', 'pipe']
  })
  const seen = []
  const exited = new Promise(function (resolve) { child.on('exit', resolve) })
  const started = await new Promise(function (resolve, reject) {
    const deadline = setTimeout(function () { reject(new Error('wxgate did not start; it said:\n' + seen.join('\n'))) }, 20000)
    let rest = ''
    child.stderr.on('data', function (chunk) {
      const lines = (rest + chunk.toString('utf8')).split('\n')
      rest = lines.pop()
      for (const line of lines) {
        seen.push(line)
        if (line.indexOf('wxgate started') >= 0) {
          clearTimeout(deadline)
          resolve(line)
        }
      }
    })
    exited.then(function (code) { clearTimeout(deadline); reject(new Error('wxgate exited ' + code + ':\n' + seen.join('\n'))) })
  })
  const field = function (name) {
    const m = new RegExp(name + '=(\\S+)').exec(started)
    if (!m) throw new Error('no ' + name + '= in ' + started)
    return 'http://' + m[1]
  }
  const gateway = {
    url: field('listen'),
    admin: field('admin'),
    upstream: upstream,
    // A token signed with the gateway's key, as `wxgate token` prints it.
    mintToken: function (openid, ttl) {
      return childProcess.execFileSync(BIN, ['token', '--openid', openid, '--appid', APPID, '--ttl', ttl, '--config', configPath])
        .toString('utf8').trim()
    },
    // wxgate_logins_total{outcome="ok"} from the admin listener.
    loginsOk: async function () {
      const res = await fetchText(gateway.admin + '/metrics')
      const m = /^wxgate_logins_total\{outcome="ok"\} (\d+)/m.exec(res.body)
      return m ? Number(m[1]) : 0
    },
    // Logs the token out behind the client's back.
    revoke: async function (token) {
      const res = await fetchText(gateway.url + '/auth/logout', { method: 'POST', headers: { authorization: 'Bearer ' + token } })
      if (res.status !== 204) throw new Error('logout: ' + res.status + ' ' + res.body)
    },
    stop: async function () {
      child.kill('SIGTERM')
      const code = await exited
      upstream.close()
      fs.rmSync(dir, { recursive: true, force: true })
      if (code !== 0) throw new Error('wxgate exited ' + code + ':\n' + seen.join('\n'))
    }
  }
  return gateway
}

let users = 0
// A fresh openid per test: the fake WeChat's counts and limits are per user.
function newOpenid () {
  users += 1
  return 'o-' + process.pid + '-' + users + '-' + crypto.randomBytes(4).toString('hex')
}

// A stand-in for the mini-program's `wx`: login gets a code from the fake
// WeChat (`plan` lists what each call hands out, then 'valid' for the rest:
// 'valid', 'used' (40163), 'invalid' (never minted: 40029) or 'fail' (the
// wx.login fail callback)); request and uploadFile do real HTTP and record
// what they sent; storage is a Map that stores JSON copies, as wx's does.
function makeWx (openid, plan) {
  const storage = new Map()
  const steps = (plan || []).slice()
  const wx = {
    logins: 0,
    codes: [],
    sent: [],
    // A test may set this to hold an answer: async (sent, res) => {}.
    beforeAnswer: null,
    login: function (o) {
      wx.logins += 1
      const step = steps.length ? steps.shift() : 'valid'
      if (step === 'fail') return setImmediate(function () { o.fail({ errMsg: 'login:fail auth deny' }) })
      const code = step === 'invalid'
        ? Promise.resolve('never-minted-' + crypto.randomBytes(8).toString('hex'))
        : control('mint', { openid: openid }).then(async function (r) {
          if (step === 'used') await control('use', { code: r.code })
          return r.code
        })
      code.then(function (c) {
        wx.codes.push(c)
        o.success({ code: c, errMsg: 'login:ok' })
      }, function (e) { o.fail({ errMsg: 'login:fail ' + e.message }) })
    },
    request: function (o) {
      const method = (o.method || 'GET').toUpperCase()
      const header = Object.assign({}, o.header)
      let url = o.url
      let body
      if (method === 'GET' && o.data && typeof o.data === 'object') {
        url += (url.indexOf('?') >= 0 ? '&' : '?') + new URLSearchParams(o.data).toString()
      } else if (o.data !== undefined) {
        body = typeof o.data === 'string' ? o.data : JSON.stringify(o.data)
      }
      if (!Object.keys(header).some(function (k) { return k.toLowerCase() === 'content-type' })) {
        header['content-type'] = 'application/json'
      }
      exchange(wx, o, 'request', { url: url, method: method, header: header, body: body }, function (text) {
        if (o.dataType === undefined || o.dataType === 'json') {
          try { return JSON.parse(text) } catch (e) { return text }
        }
        return text
      })
      return { abort: function () {} }
    },
    uploadFile: function (o) {
      const boundary = '----wxgate' + crypto.randomBytes(8).toString('hex')
      const parts = []
      const form = o.formData || {}
      for (const name of Object.keys(form)) {
        parts.push(Buffer.from('--' + boundary + '\r\nContent-Disposition: form-data; name="' + name + '"\r\n\r\n' + form[name] + '\r\n'))
      }
      parts.push(Buffer.from('--' + boundary + '\r\nContent-Disposition: form-data; name="' + o.name + '"; filename="' +
        path.basename(o.filePath) + '"\r\nContent-Type: application/octet-stream\r\n\r\n'))
      parts.push(fs.readFileSync(o.filePath))
      parts.push(Buffer.from('\r\n--' + boundary + '--\r\n'))
      const header = Object.assign({}, o.header, { 'content-type': 'multipart/form-data; boundary=' + boundary })
      exchange(wx, o, 'uploadFile', { url: o.url, method: 'POST', header: header, body: Buffer.concat(parts) }, function (text) { return text })
      return { abort: function () {} }
    },
    getStorageSync: function (key) { return storage.has(key) ? JSON.parse(storage.get(key)) : '' },
    setStorageSync: function (key, value) { storage.set(key, JSON.stringify(value)) },
    removeStorageSync: function (key) { storage.delete(key) },
    // How many jscode2session calls the codes handed out so far caused.
    wechatCalls: async function () { return (await control('calls', { codes: wx.codes })).calls },
    // What was sent to a path starting with `prefix`.
    sentTo: function (prefix) {
      return wx.sent.filter(function (s) { return new URL(s.url).pathname.indexOf(prefix) === 0 })
    }
  }
  return wx
}

function exchange (wx, o, name, req, data) {
  const record = { url: req.url, method: req.method, header: req.header }
  wx.sent.push(record)
  fetchText(req.url, { method: req.method, headers: req.header, body: req.body, timeout: o.timeout })
    .then(async function (res) {
      const answer = { statusCode: res.status, data: data(res.body), header: res.headers, errMsg: name + ':ok' }
      record.statusCode = res.status
      if (wx.beforeAnswer) await wx.beforeAnswer(record, answer)
      o.success(answer)
    }, function (e) {
      o.fail({ errMsg: name + ':fail ' + e.message })
    })
}

// The token a recorded request carried, or null.
function bearerOf (record) {
  const value = record.header.Authorization || record.header.authorization
  return value ? value.replace(/^Bearer /, '') : null
}

// A port on which nothing listens.
function closedPort () {
  return new Promise(function (resolve) {
    const s = http.createServer()
    s.listen(0, '127.0.0.1', function () {
      const port = s.address().port
      s.close(function () { resolve(port) })
    })
  })
}

module.exports = {
  APPID: APPID,
  startGateway: startGateway,
  makeWx: makeWx,
  newOpenid: newOpenid,
  bearerOf: bearerOf,
  closedPort: closedPort,
  control: control,
  fetchText: fetchText
}

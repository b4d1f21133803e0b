//! A faithful in-process fake of WeChat's `jscode2session` endpoint for integration tests.
//!
//! [`FakeWeChat::start`] binds a hand-written HTTP/1.1 server on `127.0.0.1` with an ephemeral
//! port. It answers `GET /sns/jscode2session?appid=..&secret=..&js_code=..&grant_type=..` the
//! way WeChat does: always HTTP 200 with `Content-Type: text/plain` and compact JSON, either
//! `{"session_key":..,"openid":..[,"unionid":..]}` or `{"errcode":N,"errmsg":"..., rid: .."}`.
//! Checks run in WeChat's order: 41002, 40013, 41004, 40125, 41008, 40029, 40163, 40226, 45011.
//! A code is consumed (marked used) as soon as it passes the 40029/40163 checks, before the
//! answer is written, so a later 40226/45011 or a dropped answer still burns it.
//! Faults queued with [`FakeWeChat::push_fault`] simulate outages and malformed answers.
//! Every connection is answered with `Connection: close`; any other path gets a 404.
//!
//! The APIs the internal API uses (stable_token, checksession, getuserphonenumber, and a JSON
//! and an image API that take an access_token) are in [`internal`].

#![allow(dead_code)]

pub mod internal;

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::Instant;

const ENDPOINT: &str = "/sns/jscode2session";
const CODE_TTL: Duration = Duration::from_secs(5 * 60);
const RATE_WINDOW: Duration = Duration::from_secs(60);
const RATE_LIMIT: usize = 100;
const MAX_HEAD: usize = 16 * 1024;
const MAX_BODY: usize = 1024 * 1024;

/// A misbehaviour for one `jscode2session` request, queued with [`FakeWeChat::push_fault`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// Answer `{"errcode":N,"errmsg":..}` without checking anything; the code is not consumed.
    Errcode(i64),
    /// Like [`Fault::Errcode`] but with the errcode as a JSON string (`"errcode":"40029"`).
    ErrcodeAsString(i64),
    /// Wait this long, then check and answer normally (the code is consumed normally).
    Delay(Duration),
    /// Reset the TCP connection (RST) without answering; the code is not consumed.
    Reset,
    /// Run all checks and consume the code as for a real answer, then RST without writing.
    ConsumeThenDrop,
    /// Answer HTTP 502 with `Content-Type: text/html` and an HTML body; nothing is checked.
    Http502Html,
    /// Answer HTTP 200 `text/plain` with a truncated JSON body; nothing is checked.
    MalformedJson,
    /// Answer HTTP 302 with `Location: /elsewhere` (the fake itself: a followed redirect would show as a call); nothing is checked.
    Redirect302,
    /// Check and consume normally, but a success answer carries `"session_key":""`.
    EmptySessionKey,
    /// Answer exactly this body with HTTP 200 `text/plain`; nothing is checked.
    Raw(String),
    /// Check and consume normally; send the head at once, then the body one
    /// byte per interval.
    Trickle(Duration),
}

/// A running fake WeChat API server; dropping it stops the server and its connections.
pub struct FakeWeChat {
    shared: Arc<Shared>,
    addr: SocketAddr,
    server: JoinHandle<()>,
}

struct Shared {
    state: Mutex<State>,
    calls: watch::Sender<usize>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[derive(Default)]
struct State {
    apps: HashMap<String, String>,
    users: HashMap<(String, String), User>,
    codes: HashMap<String, Code>,
    faults: VecDeque<Fault>,
    calls_per_code: HashMap<String, usize>,
    last_query: Option<String>,
    internal: internal::State,
}

impl State {
    fn user(&mut self, appid: &str, openid: &str) -> &mut User {
        self.users
            .entry((appid.to_owned(), openid.to_owned()))
            .or_insert_with(User::new)
    }
}

struct User {
    session_key: String,
    unionid: Option<String>,
    blocked: bool,
    recent: VecDeque<Instant>,
}

impl User {
    fn new() -> User {
        User {
            session_key: new_session_key(),
            unionid: None,
            blocked: false,
            recent: VecDeque::new(),
        }
    }
}

struct Code {
    appid: String,
    openid: String,
    minted: Instant,
    expired: bool,
    used: bool,
}

impl FakeWeChat {
    /// Binds `127.0.0.1:0` and starts serving on the current tokio runtime.
    pub async fn start() -> FakeWeChat {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("fake WeChat: bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("fake WeChat: local_addr");
        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            calls: watch::Sender::new(0),
        });
        let server = tokio::spawn(accept_loop(listener, Arc::clone(&shared)));
        FakeWeChat {
            shared,
            addr,
            server,
        }
    }

    /// The server's base URL, `http://127.0.0.1:PORT` (no trailing slash).
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Registers a mini-program `appid` with its `secret` (replacing any earlier secret).
    pub fn add_app(&self, appid: &str, secret: &str) {
        self.shared
            .lock()
            .apps
            .insert(appid.to_owned(), secret.to_owned());
    }

    /// Like `wx.login`: returns a fresh random 32-char URL-safe code for this user of `appid`,
    /// valid for 5 minutes, creating the user (with a random session_key) if new.
    pub fn mint_code(&self, appid: &str, openid: &str) -> String {
        let code = URL_SAFE_NO_PAD.encode(random_bytes::<24>());
        let mut st = self.shared.lock();
        st.user(appid, openid);
        st.codes.insert(
            code.clone(),
            Code {
                appid: appid.to_owned(),
                openid: openid.to_owned(),
                minted: Instant::now(),
                expired: false,
                used: false,
            },
        );
        code
    }

    /// Sets (or with `None` removes) the user's unionid, creating the user if new.
    pub fn set_unionid(&self, appid: &str, openid: &str, unionid: Option<&str>) {
        self.shared.lock().user(appid, openid).unionid = unionid.map(str::to_owned);
    }

    /// The user's current session_key, or `None` if the user does not exist.
    pub fn session_key(&self, appid: &str, openid: &str) -> Option<String> {
        let key = (appid.to_owned(), openid.to_owned());
        self.shared
            .lock()
            .users
            .get(&key)
            .map(|u| u.session_key.clone())
    }

    /// Replaces the user's session_key with a fresh random one and returns it.
    pub fn rotate_session_key(&self, appid: &str, openid: &str) -> String {
        let mut st = self.shared.lock();
        let user = st.user(appid, openid);
        user.session_key = new_session_key();
        user.session_key.clone()
    }

    /// Marks the user as high-risk: valid codes for them are consumed and answered with 40226.
    pub fn block_user(&self, appid: &str, openid: &str) {
        self.shared.lock().user(appid, openid).blocked = true;
    }

    /// Expires a minted code now (it is then answered with 40029); unknown codes are ignored.
    pub fn expire_code(&self, code: &str) {
        if let Some(c) = self.shared.lock().codes.get_mut(code) {
            c.expired = true;
        }
    }

    /// Marks a minted code as used, as if another server had exchanged it
    /// (it is then answered with 40163); unknown codes are ignored.
    pub fn use_code(&self, code: &str) {
        if let Some(c) = self.shared.lock().codes.get_mut(code) {
            c.used = true;
        }
    }

    /// Queues a fault; each `jscode2session` request takes the oldest queued fault, if any.
    pub fn push_fault(&self, fault: Fault) {
        self.shared.lock().faults.push_back(fault);
    }

    /// Number of `jscode2session` requests received so far, faulted ones included.
    pub fn calls(&self) -> usize {
        *self.shared.calls.borrow()
    }

    /// Number of `jscode2session` requests whose decoded `js_code` equals `code`.
    pub fn calls_for_code(&self, code: &str) -> usize {
        self.shared
            .lock()
            .calls_per_code
            .get(code)
            .copied()
            .unwrap_or(0)
    }

    /// Raw (still percent-encoded) query string of the latest `jscode2session` request.
    pub fn last_query(&self) -> Option<String> {
        self.shared.lock().last_query.clone()
    }

    /// Resolves once [`FakeWeChat::calls`] is at least `n`.
    pub async fn wait_for_calls(&self, n: usize) {
        let mut rx = self.shared.calls.subscribe();
        // The sender lives in `self`, so this cannot fail while we wait.
        let _ = rx.wait_for(|&calls| calls >= n).await;
    }
}

impl Drop for FakeWeChat {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl fmt::Debug for FakeWeChat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FakeWeChat")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

async fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    // Connections live in this set, so aborting this task also aborts them.
    let mut conns = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    conns.spawn(serve_connection(Arc::clone(&shared), stream));
                }
                Err(_) => tokio::task::yield_now().await,
            },
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
        }
    }
}

struct Response {
    status: u16,
    reason: &'static str,
    content_type: &'static str,
    location: Option<&'static str>,
    body: Vec<u8>,
}

impl Response {
    fn text(status: u16, reason: &'static str, body: String) -> Response {
        Response {
            status,
            reason,
            content_type: "text/plain",
            location: None,
            body: body.into_bytes(),
        }
    }
}

enum Action {
    Send(Response),
    Reset,
}

enum Plan {
    Now(Action),
    After(Duration),
    Trickle(Response, Duration),
}

async fn serve_connection(shared: Arc<Shared>, mut stream: TcpStream) {
    let request = match read_request(&mut stream).await {
        Ok(request) => request,
        Err(Some(resp)) => return write_response(&mut stream, &resp).await,
        Err(None) => return,
    };
    let target = request.target.as_str();
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    if path != ENDPOINT {
        let resp = match internal::serve(&shared, &request.method, path, query, &request.body).await
        {
            Some(internal::Outcome::Answer(resp)) => resp,
            Some(internal::Outcome::Reset) => {
                let _ = stream.set_zero_linger();
                return;
            }
            None => Response::text(404, "Not Found", "404 page not found".to_owned()),
        };
        return write_response(&mut stream, &resp).await;
    }
    let params = parse_query(query);
    let plan = {
        let mut st = shared.lock();
        st.last_query = Some(query.to_owned());
        if let Some(code) = params.get("js_code") {
            *st.calls_per_code.entry(code.clone()).or_default() += 1;
        }
        match st.faults.pop_front() {
            Some(Fault::Delay(delay)) => Plan::After(delay),
            Some(Fault::Trickle(every)) => Plan::Trickle(answer(&mut st, &params, false), every),
            Some(fault) => Plan::Now(faulted(&mut st, &params, fault)),
            None => Plan::Now(Action::Send(answer(&mut st, &params, false))),
        }
    };
    shared.calls.send_modify(|calls| *calls += 1);
    let action = match plan {
        Plan::Now(action) => action,
        Plan::After(delay) => {
            tokio::time::sleep(delay).await;
            Action::Send(answer(&mut shared.lock(), &params, false))
        }
        Plan::Trickle(resp, every) => {
            let bytes = response_bytes(&resp);
            let body_at = bytes.len() - resp.body.len();
            if stream.write_all(&bytes[..body_at]).await.is_err() {
                return;
            }
            for byte in &bytes[body_at..] {
                tokio::time::sleep(every).await;
                if stream.write_all(std::slice::from_ref(byte)).await.is_err() {
                    return;
                }
            }
            return;
        }
    };
    match action {
        Action::Send(resp) => write_response(&mut stream, &resp).await,
        Action::Reset => {
            let _ = stream.set_zero_linger();
            drop(stream);
        }
    }
}

fn faulted(st: &mut State, params: &HashMap<String, String>, fault: Fault) -> Action {
    let resp = match fault {
        Fault::Errcode(code) => Response::text(200, "OK", error_body(code, false)),
        Fault::ErrcodeAsString(code) => Response::text(200, "OK", error_body(code, true)),
        Fault::Delay(_) | Fault::Trickle(_) => answer(st, params, false),
        Fault::Reset => return Action::Reset,
        Fault::ConsumeThenDrop => {
            let _ = exchange(st, params);
            return Action::Reset;
        }
        Fault::Http502Html => Response {
            status: 502,
            reason: "Bad Gateway",
            content_type: "text/html",
            location: None,
            body: HTML_502.as_bytes().to_vec(),
        },
        Fault::MalformedJson => Response::text(
            200,
            "OK",
            r#"{"session_key":"q1w2e3r4t5y6u7i8o9p0Aa==","openid":"oAbC"#.to_owned(),
        ),
        Fault::Redirect302 => Response {
            status: 302,
            reason: "Found",
            content_type: "text/html",
            location: Some("/elsewhere"),
            body: Vec::new(),
        },
        Fault::EmptySessionKey => answer(st, params, true),
        Fault::Raw(body) => Response::text(200, "OK", body),
    };
    Action::Send(resp)
}

struct Session {
    session_key: String,
    openid: String,
    unionid: Option<String>,
}

/// Runs WeChat's checks in order, consuming the code once it is known to be valid and unused.
fn exchange(st: &mut State, params: &HashMap<String, String>) -> Result<Session, i64> {
    let param = |name: &str| {
        params
            .get(name)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    };
    let appid = param("appid").ok_or(41002)?;
    let expected_secret = st.apps.get(appid).ok_or(40013)?;
    let secret = param("secret").ok_or(41004)?;
    if secret != expected_secret {
        return Err(40125);
    }
    let code = param("js_code").ok_or(41008)?;
    let now = Instant::now();
    let code = st
        .codes
        .get_mut(code)
        .filter(|c| c.appid == appid && !c.expired && now.duration_since(c.minted) < CODE_TTL)
        .ok_or(40029)?;
    if code.used {
        return Err(40163);
    }
    code.used = true;
    let openid = code.openid.clone();
    let user = st.user(appid, &openid);
    if user.blocked {
        return Err(40226);
    }
    while let Some(&oldest) = user.recent.front() {
        if now.duration_since(oldest) < RATE_WINDOW {
            break;
        }
        user.recent.pop_front();
    }
    if user.recent.len() >= RATE_LIMIT {
        return Err(45011);
    }
    user.recent.push_back(now);
    Ok(Session {
        session_key: user.session_key.clone(),
        openid,
        unionid: user.unionid.clone(),
    })
}

fn answer(st: &mut State, params: &HashMap<String, String>, empty_key: bool) -> Response {
    let body = match exchange(st, params) {
        Ok(session) => {
            let key = if empty_key { "" } else { &session.session_key };
            let mut body = format!(
                r#"{{"session_key":{},"openid":{}"#,
                json_str(key),
                json_str(&session.openid)
            );
            if let Some(unionid) = &session.unionid {
                body.push_str(&format!(r#","unionid":{}"#, json_str(unionid)));
            }
            body.push('}');
            body
        }
        Err(code) => error_body(code, false),
    };
    Response::text(200, "OK", body)
}

fn error_body(code: i64, as_string: bool) -> String {
    let errcode = if as_string {
        json_str(&code.to_string())
    } else {
        code.to_string()
    };
    let rid = random_bytes::<12>()
        .chunks(4)
        .map(|c| c.iter().map(|b| format!("{b:02x}")).collect::<String>())
        .collect::<Vec<_>>()
        .join("-");
    let errmsg = format!("{}, rid: {rid}", errmsg(code));
    format!(r#"{{"errcode":{errcode},"errmsg":{}}}"#, json_str(&errmsg))
}

fn errmsg(code: i64) -> &'static str {
    match code {
        -1 => "system error",
        40013 => "invalid appid",
        40029 => "invalid code",
        40125 => "invalid appsecret",
        40163 => "code been used",
        40226 => "high risk user, login blocked",
        41002 => "appid missing",
        41004 => "appsecret missing",
        41008 => "missing code",
        45011 => "api minute-quota reach limit  mustslower  retry next minute",
        _ => "unknown error",
    }
}

fn json_str(s: &str) -> String {
    serde_json::Value::String(s.to_owned()).to_string()
}

fn random_bytes<const N: usize>() -> [u8; N] {
    let mut bytes = [0u8; N];
    getrandom::fill(&mut bytes).expect("fake WeChat: OS randomness");
    bytes
}

fn new_session_key() -> String {
    STANDARD.encode(random_bytes::<16>())
}

/// Decoded query parameters; the first occurrence of a name wins.
fn parse_query(query: &str) -> HashMap<String, String> {
    let mut params = HashMap::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        params
            .entry(percent_decode(name))
            .or_insert_with(|| percent_decode(value));
    }
    params
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => match (hex_val(bytes[i + 1]), hex_val(bytes[i + 2])) {
                (Some(hi), Some(lo)) => {
                    out.push(hi << 4 | lo);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex_val(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

const HTML_502: &str = "<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n\
                        <center><h1>502 Bad Gateway</h1></center>\r\n</body>\r\n</html>\r\n";

/// One request as read: method, target and its `Content-Length` body.
struct Request {
    method: String,
    target: String,
    body: Vec<u8>,
}

/// Reads one request head and its `Content-Length` body.
/// `Err(Some(_))` is an error answer to send, `Err(None)` means just close.
async fn read_request(stream: &mut TcpStream) -> Result<Request, Option<Response>> {
    let bad = |status, reason: &'static str| Some(Response::text(status, reason, reason.into()));
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(pos) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break pos;
        }
        if buf.len() > MAX_HEAD {
            return Err(bad(431, "Request Header Fields Too Large"));
        }
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return Err(None),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    };
    let head = std::str::from_utf8(&buf[..head_end]).map_err(|_| bad(400, "Bad Request"))?;
    let mut lines = head.split("\r\n");
    let request_line = lines.next().unwrap_or_default();
    let mut parts = request_line.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(bad(400, "Bad Request"));
    };
    if !version.starts_with("HTTP/1.") || !target.starts_with('/') {
        return Err(bad(400, "Bad Request"));
    }
    let mut content_length = 0usize;
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            return Err(bad(400, "Bad Request"));
        };
        if name.trim().eq_ignore_ascii_case("content-length") {
            content_length = value.trim().parse().map_err(|_| bad(400, "Bad Request"))?;
        }
    }
    if content_length > MAX_BODY {
        return Err(bad(413, "Payload Too Large"));
    }
    let (method, target) = (method.to_owned(), target.to_owned());
    let mut body = buf.split_off(head_end + 4);
    while body.len() < content_length {
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return Err(None),
            Ok(n) => body.extend_from_slice(&chunk[..n]),
        }
    }
    body.truncate(content_length);
    Ok(Request {
        method,
        target,
        body,
    })
}

async fn write_response(stream: &mut TcpStream, resp: &Response) {
    if stream.write_all(&response_bytes(resp)).await.is_ok() {
        let _ = stream.shutdown().await;
    }
}

fn response_bytes(resp: &Response) -> Vec<u8> {
    let mut head = format!(
        "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\n",
        resp.status,
        resp.reason,
        resp.content_type,
        resp.body.len()
    );
    if let Some(location) = resp.location {
        head.push_str(&format!("Location: {location}\r\n"));
    }
    head.push_str("\r\n");
    let mut bytes = head.into_bytes();
    bytes.extend_from_slice(&resp.body);
    bytes
}

//! Helpers for integration tests: a real gateway on 127.0.0.1:0 in this
//! process, a fake WeChat and a recording upstream (each a real server on an
//! ephemeral port), and small clients (reqwest, and raw sockets where the
//! bytes matter).

#![allow(dead_code)]

pub mod attack;
pub mod fake_wechat;
pub mod internal_api;
pub mod login_flow;
pub mod manifests;
pub mod nginx;
pub mod process;
pub mod prom;
pub mod redis_server;
pub mod tls;
pub mod upstream;

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use wxgate::{Config, Gateway, Listeners};

pub const APPID: &str = "wxtest0000000001";
pub const APP_SECRET: &str = "app-secret-do-not-leak-9f8e7d6c";
pub const JWT_SECRET: &str = "jwt-signing-key-do-not-leak-0123456789";

/// A config with one app, one HS256 key, a public and a protected route to
/// `upstream`, and WeChat at `wechat`. Tests append tables or edit the text.
pub fn base_config(upstream: &str, wechat: &str) -> String {
    format!(
        r#"
[server]
listen = "127.0.0.1:0"
shutdown_grace = "5s"

[admin]
listen = "127.0.0.1:0"

[wechat]
api_base = "{wechat}"
timeout = "2s"

[[apps]]
appid = "{APPID}"
secret = "{APP_SECRET}"

[auth]
login_rate_limit = "off"

[token]
[[token.keys]]
id = "k1"
secret = "{JWT_SECRET}"

[[routes]]
path = "/public"
upstream = "{upstream}"
auth = "none"

[[routes]]
path = "/api"
upstream = "{upstream}"
auth = "required"
"#
    )
}

/// A running in-process gateway.
pub struct TestGateway {
    pub addr: SocketAddr,
    pub admin: SocketAddr,
    /// The internal API's listener, bound when the config has `[internal]`.
    pub internal: Option<SocketAddr>,
    pub gw: Gateway,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl TestGateway {
    /// Parses `toml` (panicking on a config error) and serves it.
    pub async fn start(toml: &str) -> TestGateway {
        let config = Config::parse_with_env(toml, Path::new("test.toml"), Some(Default::default()))
            .unwrap_or_else(|e| panic!("test config: {e}"));
        Self::start_config(config).await
    }

    pub async fn start_config(config: Config) -> TestGateway {
        let main = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let admin = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let (addr, admin_addr) = (main.local_addr().unwrap(), admin.local_addr().unwrap());
        let internal = match &config.internal {
            Some(_) => Some(TcpListener::bind("127.0.0.1:0").await.unwrap()),
            None => None,
        };
        let internal_addr = internal.as_ref().map(|l| l.local_addr().unwrap());
        let gw = Gateway::new(config).expect("gateway");
        let (tx, rx) = oneshot::channel::<()>();
        let listeners = Listeners {
            main,
            admin: Some(admin),
            echo: None,
            internal,
        };
        let task = tokio::spawn(wxgate::run(gw.clone(), listeners, async {
            let _ = rx.await;
        }));
        TestGateway {
            addr,
            admin: admin_addr,
            internal: internal_addr,
            gw,
            shutdown: Some(tx),
            task: Some(task),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// A URL on the internal API's listener (panics without `[internal]`).
    pub fn internal_url(&self, path: &str) -> String {
        format!(
            "http://{}{}",
            self.internal.expect("[internal] configured"),
            path
        )
    }

    pub fn admin_url(&self, path: &str) -> String {
        format!("http://{}{}", self.admin, path)
    }

    /// Starts the graceful shutdown; returns the task that ends with it.
    pub fn begin_shutdown(&mut self) -> JoinHandle<()> {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        self.task.take().expect("shut down once")
    }
}

impl Drop for TestGateway {
    fn drop(&mut self) {
        if let Some(task) = &self.task {
            task.abort();
        }
    }
}

/// A plain HTTP client: no proxy, no redirects, no pooling surprises.
pub fn client() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// Mints a token the way `wxgate token` does, with the test key.
pub fn token(gw: &Gateway, openid: &str) -> String {
    token_for(gw, openid, APPID, None)
}

pub fn token_for(gw: &Gateway, openid: &str, appid: &str, unionid: Option<&str>) -> String {
    let rt = gw.snapshot();
    rt.keys
        .mint(
            openid,
            appid,
            unionid,
            Duration::from_secs(600),
            wxgate::auth::token::now(),
        )
        .unwrap()
        .0
}

/// Sends raw bytes and reads until the server closes the connection (or
/// 10 s pass, which a test then reports as what it read so far).
pub async fn raw(addr: SocketAddr, request: &[u8]) -> String {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(request).await.unwrap();
    read_to_close(&mut stream).await
}

pub async fn read_to_close(stream: &mut TcpStream) -> String {
    let mut out = Vec::new();
    let mut buf = [0u8; 8192];
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) | Err(_) => break,
            Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Reads until the peer closes (EOF or an error such as a reset); `None` if
/// it is still open after `bound`.
pub async fn closed_within(stream: &mut TcpStream, bound: Duration) -> Option<String> {
    let mut out = Vec::new();
    let mut buf = [0u8; 8192];
    let deadline = tokio::time::Instant::now() + bound;
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Err(_) => return None,
            Ok(Ok(0)) | Ok(Err(_)) => return Some(String::from_utf8_lossy(&out).into_owned()),
            Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
        }
    }
}

/// Polls `check` until it gives `Some`, for at most `within`, and panics
/// naming `what` if it never does. The one way a test waits for something
/// that happens on its own time (a pub/sub message, a metric, a renewal):
/// every round is a real check; the short pause between rounds only spares
/// the CPU, it is never what the test waits for.
pub async fn eventually<T, F, Fut>(within: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if let Some(done) = check().await {
            return done;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what}: not within {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Config edits in tests: `config.edit(anchor, with)` replaces `anchor`,
/// and panics if it is not in the text exactly once, so an edit whose
/// anchor moved never silently does nothing.
pub trait Edit {
    fn edit(&self, anchor: &str, with: &str) -> String;
}

impl Edit for str {
    #[track_caller]
    fn edit(&self, anchor: &str, with: &str) -> String {
        assert_eq!(
            self.matches(anchor).count(),
            1,
            "the anchor {anchor:?} is not in the config exactly once:\n{self}"
        );
        self.replacen(anchor, with, 1)
    }
}

/// The status code of the first response in `raw` text.
pub fn status_of(response: &str) -> u16 {
    response
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {response:?}"))
}

/// A local port with nothing listening on it.
pub fn closed_port() -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap()
}

/// `http://` and a [`closed_port`]: a WeChat or an upstream that a test
/// never reaches (a fixed port could be some other program's).
pub fn nowhere() -> String {
    format!("http://{}", closed_port())
}
/// A raw HTTP/1.1 request: `method target`, then `headers` in order. Adds
/// `Host: gw.test` and `Connection: close` unless `headers` name them, so
/// that [`raw`] returns as soon as the answer is complete.
pub fn http_request(method: &str, target: &str, headers: &[(&str, &str)]) -> Vec<u8> {
    let mut out = format!("{method} {target} HTTP/1.1\r\n");
    let has = |name: &str| headers.iter().any(|(n, _)| n.eq_ignore_ascii_case(name));
    if !has("host") {
        out.push_str("Host: gw.test\r\n");
    }
    if !has("connection") {
        out.push_str("Connection: close\r\n");
    }
    for (name, value) in headers {
        out.push_str(&format!("{name}: {value}\r\n"));
    }
    out.push_str("\r\n");
    out.into_bytes()
}

/// One HTTP/1.1 response read off a raw socket.
#[derive(Debug)]
pub struct RawResponse {
    pub status: u16,
    /// Header lines as sent (names lowercased).
    pub headers: Vec<(String, String)>,
    /// The body, de-chunked.
    pub body: String,
    /// Trailer lines of a chunked body (names lowercased).
    pub trailers: Vec<(String, String)>,
}

impl RawResponse {
    /// Parses the first response in `text` (as returned by [`raw`]).
    pub fn parse(text: &str) -> RawResponse {
        let (head, rest) = text
            .split_once("\r\n\r\n")
            .unwrap_or_else(|| panic!("no complete response head in {text:?}"));
        let mut lines = head.split("\r\n");
        let status = status_of(lines.next().unwrap_or(""));
        let headers = header_lines(lines);
        let mut response = RawResponse {
            status,
            headers,
            body: String::new(),
            trailers: Vec::new(),
        };
        let chunked = response
            .header("transfer-encoding")
            .is_some_and(|v| v.eq_ignore_ascii_case("chunked"));
        if !chunked {
            response.body = match response.header("content-length") {
                Some(n) => rest[..n.parse::<usize>().unwrap().min(rest.len())].to_owned(),
                None => rest.to_owned(),
            };
            return response;
        }
        let mut rest = rest;
        loop {
            let (size, after) = rest.split_once("\r\n").expect("chunk size line");
            let size = usize::from_str_radix(size.split(';').next().unwrap().trim(), 16)
                .unwrap_or_else(|_| panic!("bad chunk size in {text:?}"));
            if size == 0 {
                let trailer_block = after.split("\r\n\r\n").next().unwrap_or("");
                response.trailers = header_lines(trailer_block.split("\r\n"));
                return response;
            }
            response.body.push_str(&after[..size]);
            rest = &after[size + 2..];
        }
    }

    /// First value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The body as JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("body is not JSON ({e}): {:?}", self.body))
    }
}

fn header_lines<'a>(lines: impl Iterator<Item = &'a str>) -> Vec<(String, String)> {
    lines
        .filter(|l| !l.is_empty())
        .map(|l| {
            let (n, v) = l.split_once(':').unwrap_or((l, ""));
            (n.trim().to_ascii_lowercase(), v.trim().to_owned())
        })
        .collect()
}

/// Sends a raw request built by [`http_request`] and parses the answer.
pub async fn raw_request(
    addr: SocketAddr,
    method: &str,
    target: &str,
    headers: &[(&str, &str)],
) -> RawResponse {
    RawResponse::parse(&raw(addr, &http_request(method, target, headers)).await)
}

/// `Authorization: Bearer <token>` as a header value.
pub fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

/// The base config (no WeChat) plus `extra` TOML, served.
pub async fn gateway_with(up: &upstream::Upstream, extra: &str) -> TestGateway {
    let toml = format!("{}\n{extra}", base_config(&up.url(), &nowhere()));
    TestGateway::start(&toml).await
}

/// A JSON error answer with this status and `error` code.
pub fn assert_error(res: &RawResponse, status: u16, code: &str) {
    assert_eq!(res.status, status, "{res:?}");
    assert_eq!(
        res.header("content-type"),
        Some("application/json"),
        "{res:?}"
    );
    assert_eq!(res.json()["error"], code, "{res:?}");
}

/// The sender half of a cleartext HTTP/2 (prior knowledge) connection.
pub type H2Sender = hyper::client::conn::http2::SendRequest<http_body_util::Empty<bytes::Bytes>>;

/// Opens an HTTP/2 connection to `addr`; the returned task drives it and
/// ends when the connection does (the gateway closing it, say).
pub async fn h2_connect(addr: SocketAddr) -> (H2Sender, tokio::task::JoinHandle<()>) {
    use hyper_util::rt::{TokioExecutor, TokioIo};
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .unwrap();
    let conn = tokio::spawn(async move {
        let _ = conn.await;
    });
    (sender, conn)
}

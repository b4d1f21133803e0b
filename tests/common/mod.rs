//! Helpers for integration tests: a real gateway on 127.0.0.1:0 in this
//! process, a fake WeChat and a recording upstream (each a real server on an
//! ephemeral port), and small clients (reqwest, and raw sockets where the
//! bytes matter).

#![allow(dead_code)]

pub mod fake_wechat;
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
        let gw = Gateway::new(config).expect("gateway");
        let (tx, rx) = oneshot::channel::<()>();
        let listeners = Listeners {
            main,
            admin: Some(admin),
            echo: None,
        };
        let task = tokio::spawn(wxgate::run(gw.clone(), listeners, async {
            let _ = rx.await;
        }));
        TestGateway {
            addr,
            admin: admin_addr,
            gw,
            shutdown: Some(tx),
            task: Some(task),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
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
    let rt = gw.runtime();
    rt.keys
        .mint(
            openid,
            appid,
            unionid,
            Duration::from_secs(600),
            wxgate::token::now(),
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

/// The status code of the first response in `raw` text.
pub fn status_of(response: &str) -> u16 {
    response
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {response:?}"))
}

/// A local port with nothing listening on it.
pub async fn closed_port() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    addr
}

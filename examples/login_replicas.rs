//! Measures logins across replicas sharing the Redis store: 50 concurrent
//! submissions of one code spread over 2 replicas (how many WeChat calls),
//! then login throughput with the memory store (1 replica) and the Redis
//! store (2 replicas), against an in-process fake WeChat that answers at
//! once (so the figures are wxgate's and the store's cost).
//!
//! ```sh
//! apt-get install redis-server   # or REDIS_SERVER_BIN=/path/to/redis-server
//! cargo run --release --example login_replicas -- [seconds] [concurrency]
//! ```
//!
//! Starts its own redis-server on a free port (no persistence) and stops it
//! at the end; the gateways run in this process, on 127.0.0.1:0.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use http_body_util::Full;
use hyper::body::Bytes;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

use wxgate::{Config, Gateway, Listeners};

const APPID: &str = "wxbench000000001";
const STORE_KEY: &str = "YmVuY2gtc3RvcmUta2V5LTAxMjM0NTY3ODlhYmNkZWY=";

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let seconds: u64 = args.next().map_or(5, |s| s.parse().expect("seconds"));
    let concurrency: usize = args.next().map_or(32, |s| s.parse().expect("concurrency"));
    let _ = rustls::crypto::ring::default_provider().install_default();

    let redis = RedisServer::start();
    let (wechat, calls) = fake_wechat(Duration::from_millis(200)).await;
    let redis_store = format!(
        "[store]\nbackend = \"redis\"\nurl = \"redis://{}/0\"\nencryption_key = \"{STORE_KEY}\"\n",
        redis.addr
    );

    // 1. One code, 50 submissions at once, over 2 replicas.
    let replicas = [
        start(&config(wechat, &redis_store)).await,
        start(&config(wechat, &redis_store)).await,
    ];
    wait_connected(&replicas).await;
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    let started = Instant::now();
    let answers = futures_util::future::join_all(
        (0..50).map(|i| login(&client, replicas[i % 2], "one-code-for-all")),
    )
    .await;
    let took = started.elapsed();
    let ok = answers.iter().flatten().count();
    let tokens: std::collections::HashSet<_> = answers.into_iter().flatten().collect();
    println!(
        "50 submissions of one code over 2 replicas: {} WeChat call(s), {ok} answered 200 with {} distinct token(s), in {took:.0?}",
        calls.load(Ordering::Relaxed),
        tokens.len(),
    );

    // 2. Throughput, WeChat answering at once.
    let (wechat, _) = fake_wechat(Duration::ZERO).await;
    for (phase, (name, store, count)) in [
        ("memory store, 1 replica", String::new(), 1),
        ("Redis store, 2 replicas", redis_store.clone(), 2),
    ]
    .into_iter()
    .enumerate()
    {
        let mut replicas = Vec::new();
        for _ in 0..count {
            replicas.push(start(&config(wechat, &store)).await);
        }
        wait_connected(&replicas).await;
        let done = Arc::new(AtomicUsize::new(0));
        let failed = Arc::new(AtomicUsize::new(0));
        let until = Instant::now() + Duration::from_secs(seconds);
        let workers: Vec<_> = (0..concurrency)
            .map(|w| {
                let (client, done, failed) = (client.clone(), done.clone(), failed.clone());
                let target = replicas[w % replicas.len()];
                tokio::spawn(async move {
                    let mut n = 0;
                    while Instant::now() < until {
                        n += 1;
                        let code = format!("p{phase}-{w}-{n}");
                        match login(&client, target, &code).await {
                            Some(_) => done.fetch_add(1, Ordering::Relaxed),
                            None => failed.fetch_add(1, Ordering::Relaxed),
                        };
                    }
                })
            })
            .collect();
        for w in workers {
            w.await.unwrap();
        }
        let ok = done.load(Ordering::Relaxed);
        println!(
            "login throughput, {name}: {:.0} logins/s ({ok} in {seconds} s, {} failed, {concurrency} clients)",
            ok as f64 / seconds as f64,
            failed.load(Ordering::Relaxed),
        );
    }
}

fn config(wechat: SocketAddr, store: &str) -> String {
    format!(
        r#"
[server]
listen = "127.0.0.1:0"

[admin]
listen = "127.0.0.1:0"

[wechat]
api_base = "http://{wechat}"

[[apps]]
appid = "{APPID}"
secret = "bench-app-secret"

[auth]
login_rate_limit = "off"

[token]
[[token.keys]]
id = "k1"
secret = "login-replicas-bench-key-0123456789abcdef"

[[routes]]
path = "/api"
upstream = "http://127.0.0.1:9"
auth = "required"

[log]
level = "error"

{store}
"#
    )
}

/// A gateway in this process; dropped with the runtime at exit.
async fn start(toml: &str) -> SocketAddr {
    let config = Config::parse_with_env(toml, Path::new("bench.toml"), Some(Default::default()))
        .unwrap_or_else(|e| panic!("bench config: {e}"));
    let main = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = main.local_addr().unwrap();
    let gw = Gateway::new(config).expect("gateway");
    let listeners = Listeners {
        main,
        admin: None,
        echo: None,
        internal: None,
    };
    tokio::spawn(wxgate::run(gw, listeners, std::future::pending::<()>()));
    addr
}

/// Until a login on each replica gets past the store (a connected store
/// answers something other than 503).
async fn wait_connected(replicas: &[SocketAddr]) {
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    for addr in replicas {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let res = client
                .post(format!("http://{addr}/auth/login"))
                .header("content-type", "application/json")
                .body(r#"{"code": "bad code"}"#)
                .send()
                .await
                .unwrap();
            if res.status() == 400 {
                break;
            }
            assert!(Instant::now() < deadline, "the store never connected");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// The token, or `None` for any other answer.
async fn login(client: &reqwest::Client, addr: SocketAddr, code: &str) -> Option<String> {
    let res = client
        .post(format!("http://{addr}/auth/login"))
        .header("content-type", "application/json")
        .body(format!(r#"{{"code": "{code}"}}"#))
        .send()
        .await
        .ok()?;
    if res.status() != 200 {
        return None;
    }
    let body: serde_json::Value = serde_json::from_slice(&res.bytes().await.ok()?).ok()?;
    body["access_token"].as_str().map(str::to_owned)
}

/// Answers every code2session with a session for `o-<code>` after `delay`;
/// counts the calls.
async fn fake_wechat(delay: Duration) -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let calls = Arc::new(AtomicUsize::new(0));
    let counter = calls.clone();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let counter = counter.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(
                    move |req: Request<hyper::body::Incoming>| {
                        let counter = counter.clone();
                        async move {
                            counter.fetch_add(1, Ordering::Relaxed);
                            let code = req
                                .uri()
                                .query()
                                .unwrap_or("")
                                .split('&')
                                .find_map(|kv| kv.strip_prefix("js_code="))
                                .unwrap_or("none")
                                .to_owned();
                            tokio::time::sleep(delay).await;
                            let body = format!(
                                r#"{{"session_key":"c2Vzc2lvbi1rZXktYmVuY2g=","openid":"o-{code}"}}"#
                            );
                            Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(body))))
                        }
                    },
                );
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    (addr, calls)
}

struct RedisServer {
    addr: SocketAddr,
    child: Child,
}

impl RedisServer {
    fn start() -> RedisServer {
        let bin = std::env::var("REDIS_SERVER_BIN").unwrap_or_else(|_| "redis-server".to_owned());
        let addr = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .unwrap();
        let child = Command::new(&bin)
            .args(["--bind", "127.0.0.1", "--port", &addr.port().to_string()])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {bin} (apt-get install redis-server): {e}"));
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(addr).is_err() {
            assert!(Instant::now() < deadline, "redis-server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        RedisServer { addr, child }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

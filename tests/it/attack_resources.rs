//! Resource abuse: clients that hold connections, send slowly, declare
//! huge bodies or flood the login. Every phase of a connection has a bound,
//! and while one client abuses it, another is served. The single cases
//! already covered are in `tests/it/server.rs` (a head over
//! `max_header_bytes`, more than 100 headers, one silent or stalling client,
//! an idle HTTP/1 keep-alive) and `tests/it/login.rs` (the login body limit).

use std::time::{Duration, Instant};

use crate::common::fake_wechat::FakeWeChat;
use crate::common::login_flow::{rate_limit, Setup};
use crate::common::upstream::Upstream;
use crate::common::*;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::task::JoinHandle;

/// Generous: the limits under test are far shorter.
const BOUND: Duration = Duration::from_secs(10);

fn with_server(up: &Upstream, wechat: &str, keys: &str) -> String {
    base_config(&up.url(), wechat).edit("[server]\n", &format!("[server]\n{keys}\n"))
}

/// A gateway with these `[server]` keys and no WeChat.
async fn gateway_with_server(up: &Upstream, keys: &str) -> TestGateway {
    TestGateway::start(&with_server(up, &nowhere(), keys)).await
}

/// A healthy request that must succeed while the abuse goes on.
async fn assert_still_serving(gw: &TestGateway) {
    let res = tokio::time::timeout(BOUND, raw_request(gw.addr, "GET", "/public/ok", &[]))
        .await
        .expect("a healthy request waited too long");
    assert_eq!(res.status, 200, "{res:?}");
}

#[tokio::test]
async fn a_crowd_of_slow_heads_is_cut_off_and_others_are_served() {
    let up = Upstream::start().await;
    let gw = gateway_with_server(&up, "header_timeout = \"400ms\"").await;
    let head = b"GET /public/slow HTTP/1.1\r\nHost: gw.test\r\nX-Pad: aaaaaaaaaaaaaaaaaaaa\r\n\r\n";
    let mut dribblers = Vec::new();
    for _ in 0..20 {
        let addr = gw.addr;
        dribblers.push(tokio::spawn(async move {
            let mut stream = TcpStream::connect(addr).await.unwrap();
            let started = Instant::now();
            // One byte every 50 ms: the whole head would take 4 s.
            for byte in head {
                if stream.write_all(&[*byte]).await.is_err() {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            let answer = closed_within(&mut stream, BOUND).await;
            (started.elapsed(), answer)
        }));
    }
    assert_still_serving(&gw).await;
    for d in dribblers {
        let (elapsed, answer) = d.await.unwrap();
        let answer = answer.expect("a slow head was never cut off");
        assert!(!answer.contains("\"ok\":true"), "{answer}");
        assert!(elapsed < Duration::from_secs(4), "cut after {elapsed:?}");
    }
    let slow = up
        .requests()
        .iter()
        .filter(|r| r.target == "/public/slow")
        .count();
    assert_eq!(slow, 0);
}

#[tokio::test]
async fn a_slow_login_body_is_refused_in_bounded_time() {
    let fake = FakeWeChat::start().await;
    fake.add_app(APPID, APP_SECRET);
    let up = Upstream::start().await;
    let gw = TestGateway::start(&with_server(
        &up,
        &fake.base_url(),
        "header_timeout = \"500ms\"",
    ))
    .await;
    let mut stream = TcpStream::connect(gw.addr).await.unwrap();
    stream
        .write_all(
            b"POST /auth/login HTTP/1.1\r\nHost: gw.test\r\nContent-Type: application/json\r\n\
              Content-Length: 40\r\n\r\n{\"code\":",
        )
        .await
        .unwrap();
    let started = Instant::now();
    assert_still_serving(&gw).await;
    let answer = closed_within(&mut stream, BOUND)
        .await
        .expect("a stalled login body held its connection");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    let res = RawResponse::parse(&answer);
    assert_error(&res, 400, "invalid_request");
    assert_eq!(fake.calls(), 0);
}

#[tokio::test]
async fn huge_declared_login_bodies_are_413_without_reading_them() {
    let s = Setup::start().await;
    for length in ["4097", "1000000", "1000000000000000"] {
        let head = format!(
            "POST /auth/login HTTP/1.1\r\nHost: gw.test\r\nContent-Type: application/json\r\n\
             Content-Length: {length}\r\nConnection: close\r\n\r\n{{\"code\":\"x\"}}"
        );
        let started = Instant::now();
        let answer = raw(s.gw.addr, head.as_bytes()).await;
        assert!(started.elapsed() < Duration::from_secs(5));
        assert_error(&RawResponse::parse(&answer), 413, "payload_too_large");
    }
    // A length hyper cannot represent is refused by the parser itself.
    let head = "POST /auth/login HTTP/1.1\r\nHost: gw.test\r\nContent-Type: application/json\r\n\
                Content-Length: 18446744073709551615\r\nConnection: close\r\n\r\n";
    let status = status_of(&raw(s.gw.addr, head.as_bytes()).await);
    assert!(matches!(status, 400 | 413 | 431), "{status}");
    // Chunked, no length declared: cut at the limit.
    let mut chunked =
        b"POST /auth/login HTTP/1.1\r\nHost: gw.test\r\nContent-Type: application/json\r\n\
                        Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
            .to_vec();
    for _ in 0..10 {
        chunked.extend_from_slice(b"400\r\n");
        chunked.extend_from_slice(&[b' '; 1024]);
        chunked.extend_from_slice(b"\r\n");
    }
    chunked.extend_from_slice(b"0\r\n\r\n");
    let answer = raw(s.gw.addr, &chunked).await;
    assert_error(&RawResponse::parse(&answer), 413, "payload_too_large");
    assert_eq!(s.fake.calls(), 0);
}

#[tokio::test]
async fn idle_connections_past_the_cap_wait_then_get_served() {
    let up = Upstream::start().await;
    let gw = gateway_with_server(&up, "header_timeout = \"500ms\"\nmax_connections = 8").await;
    let mut idle = Vec::new();
    for _ in 0..8 {
        idle.push(TcpStream::connect(gw.addr).await.unwrap());
    }
    // The ninth waits in the backlog until the idle ones are cut, then is
    // served: the cap bounds memory, the header timeout bounds the wait.
    let started = Instant::now();
    assert_still_serving(&gw).await;
    let waited = started.elapsed();
    for mut s in idle {
        assert!(
            closed_within(&mut s, BOUND).await.is_some(),
            "an idle connection stayed"
        );
    }
    assert!(waited < BOUND, "{waited:?}");
}

/// A gateway with `idle_timeout`, and an HTTP/2 connection to it: the
/// sender and the task driving the connection (it ends when the gateway
/// closes it).
async fn h2_gateway(up: &Upstream, idle: &str) -> (TestGateway, H2Sender, JoinHandle<()>) {
    let keys = format!("idle_timeout = \"{idle}\"");
    let gw = gateway_with_server(up, &keys).await;
    let (sender, conn) = h2_connect(gw.addr).await;
    (gw, sender, conn)
}

fn h2_get(path: &str) -> http::Request<http_body_util::Empty<bytes::Bytes>> {
    http::Request::get(format!("http://gw.test{path}"))
        .body(http_body_util::Empty::new())
        .unwrap()
}

#[tokio::test]
async fn an_idle_http2_connection_is_closed_after_idle_timeout() {
    let up = Upstream::start().await;
    let (_gw, mut sender, conn) = h2_gateway(&up, "300ms").await;
    let res = sender.send_request(h2_get("/public/h2")).await.unwrap();
    assert_eq!(res.status(), 200);
    // Then nothing: the gateway sends GOAWAY and closes.
    let started = Instant::now();
    tokio::time::timeout(BOUND, conn)
        .await
        .expect("an idle HTTP/2 connection stayed open")
        .unwrap();
    let took = started.elapsed();
    assert!(took >= Duration::from_millis(250), "{took:?}");
    assert_eq!(up.requests().len(), 1);
}

#[tokio::test]
async fn a_busy_http2_connection_is_not_cut_mid_request() {
    use http_body_util::BodyExt;

    let up = Upstream::start().await;
    let (_gw, mut sender, _conn) = h2_gateway(&up, "200ms").await;
    // A request the upstream holds past the idle timeout still completes.
    let req = h2_get("/public/hold");
    let pending = tokio::spawn(sender.send_request(req));
    tokio::time::sleep(Duration::from_millis(400)).await; // pacing past the idle timeout
    up.release_hold();
    let res = pending.await.unwrap().unwrap();
    assert_eq!(res.status(), 200);
    let body = res.into_body().collect().await.unwrap().to_bytes();
    assert!(body.starts_with(b"{\"ok\":true"), "{body:?}");
}

#[tokio::test]
async fn a_login_flood_is_rate_limited_before_wechat() {
    let s = Setup::with(|c| rate_limit(&c, "3/min")).await;
    let mut statuses = Vec::new();
    for i in 0..10 {
        let res = s.login(&format!("flood-code-{i}")).await;
        statuses.push(res.status);
        if res.status == 429 {
            res.assert_error(429, "rate_limited");
            let retry: u64 = res.header("retry-after").unwrap().parse().unwrap();
            assert!((1..=60).contains(&retry), "{retry}");
        }
    }
    assert_eq!(
        statuses.iter().filter(|s| **s == 429).count(),
        7,
        "{statuses:?}"
    );
    assert_eq!(s.fake.calls(), 3, "the flood reached WeChat");
    // Other endpoints are not rate limited.
    let res = raw_request(s.gw.addr, "GET", "/public/x", &[]).await;
    assert_eq!(res.status, 200);
}

/// A listener whose accept queue is full: further connects hang in SYN.
async fn black_hole() -> (tokio::net::TcpListener, Vec<TcpStream>) {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let listener = socket.listen(0).unwrap();
    let addr = listener.local_addr().unwrap();
    let mut held = Vec::new();
    // Fill the queue until a connect no longer completes.
    for _ in 0..16 {
        match tokio::time::timeout(Duration::from_millis(300), TcpStream::connect(addr)).await {
            Ok(Ok(s)) => held.push(s),
            _ => return (listener, held),
        }
    }
    panic!("the accept queue never filled");
}

#[tokio::test]
async fn the_upstream_connect_timeout_bounds_a_hanging_connect() {
    let up = Upstream::start().await;
    let (hole, _held) = black_hole().await;
    let toml = with_server(&up, &nowhere(), "connect_timeout = \"300ms\"").edit(
        "[[routes]]\npath = \"/public\"",
        &format!(
            "[[routes]]\npath = \"/dark\"\nupstream = \"http://{}\"\nauth = \"none\"\ntimeout = \"30s\"\n\n[[routes]]\npath = \"/public\"",
            hole.local_addr().unwrap()
        ),
    );
    let gw = TestGateway::start(&toml).await;
    let started = Instant::now();
    let res = raw_request(gw.addr, "GET", "/dark/x", &[]).await;
    assert_error(&res, 502, "upstream_unavailable");
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(250),
        "{took:?}: the connect did not hang"
    );
    assert!(took < Duration::from_secs(5), "{took:?}");
    assert_still_serving(&gw).await;
}

/// A WebSocket tunnel through the gateway to the echoing upstream, checked
/// with one round trip.
async fn open_tunnel(addr: std::net::SocketAddr) -> TcpStream {
    use tokio::io::AsyncReadExt;

    let mut tunnel = TcpStream::connect(addr).await.unwrap();
    let handshake = http_request(
        "GET",
        "/public/ws",
        &[
            ("Connection", "upgrade"),
            ("Upgrade", "websocket"),
            ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
            ("Sec-WebSocket-Version", "13"),
        ],
    );
    tunnel.write_all(&handshake).await.unwrap();
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = tokio::time::timeout(BOUND, tunnel.read(&mut buf))
            .await
            .unwrap()
            .unwrap();
        assert!(n > 0);
        head.extend_from_slice(&buf[..n]);
    }
    assert!(
        head.starts_with(b"HTTP/1.1 101"),
        "{}",
        String::from_utf8_lossy(&head)
    );
    assert_echoes(&mut tunnel).await;
    tunnel
}

async fn assert_echoes(tunnel: &mut TcpStream) {
    use tokio::io::AsyncReadExt;

    tunnel.write_all(b"ping").await.unwrap();
    let mut echo = [0u8; 4];
    tokio::time::timeout(BOUND, tunnel.read_exact(&mut echo))
        .await
        .expect("no echo")
        .unwrap();
    assert_eq!(&echo, b"ping");
}

#[tokio::test]
async fn a_websocket_tunnel_keeps_its_connection_slot() {
    // One slot: while a tunnel is open, the next client waits in the
    // backlog; when the tunnel closes, it is served.
    let up = Upstream::start().await;
    let gw = gateway_with_server(&up, "max_connections = 1").await;
    let tunnel = open_tunnel(gw.addr).await;

    let addr = gw.addr;
    let mut waiting =
        tokio::spawn(async move { raw_request(addr, "GET", "/public/next", &[]).await });
    // Not served while the tunnel holds the only slot.
    let early = tokio::time::timeout(Duration::from_millis(500), &mut waiting).await;
    assert!(
        early.is_err(),
        "served past max_connections while a tunnel was open"
    );
    drop(tunnel);
    let res = tokio::time::timeout(BOUND, waiting)
        .await
        .expect("never served")
        .unwrap();
    assert_eq!(res.status, 200, "{res:?}");
}

#[tokio::test]
async fn a_silent_websocket_tunnel_is_closed_after_idle_timeout() {
    // One slot, so the tunnel's close is also seen as the slot coming back.
    let up = Upstream::start().await;
    let keys = "max_connections = 1\nidle_timeout = \"500ms\"";
    let gw = gateway_with_server(&up, keys).await;
    let mut tunnel = open_tunnel(gw.addr).await;
    // Traffic keeps it open well past the idle timeout.
    let busy = Instant::now();
    while busy.elapsed() < Duration::from_millis(1500) {
        assert_echoes(&mut tunnel).await;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Then silence: closed (by the gateway, not the upstream, which only
    // echoes) one to two idle periods after the last byte, which passed
    // just before this (at most one pause earlier).
    let silent = Instant::now();
    assert!(
        closed_within(&mut tunnel, BOUND).await.is_some(),
        "a silent tunnel stayed open"
    );
    let took = silent.elapsed();
    assert!(took >= Duration::from_millis(400), "{took:?}");
    // Its slot is free again.
    assert_still_serving(&gw).await;
}

//! The forwarding itself: upstream failures, timeouts, connection pooling,
//! WebSocket upgrades and response trailers.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::common::upstream::Upstream;
use crate::common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

#[tokio::test]
async fn a_refused_upstream_is_502_upstream_unavailable() {
    let up = Upstream::start().await;
    let down = closed_port();
    let extra =
        format!("[[routes]]\npath = \"/down\"\nupstream = \"http://{down}\"\nauth = \"none\"\n");
    let gw = gateway_with(&up, &extra).await;
    let res = raw_request(gw.addr, "GET", "/down/x", &[]).await;
    assert_error(&res, 502, "upstream_unavailable");
    // The gateway itself is fine.
    let res = raw_request(gw.addr, "GET", "/public/x", &[]).await;
    assert_eq!(res.status, 200, "{res:?}");
    assert_eq!(up.next_request().await.target, "/public/x");
}

#[tokio::test]
async fn an_upstream_reset_is_502_upstream_unavailable() {
    let up = Upstream::start().await;
    let gw = gateway_with(&up, "").await;
    let res = raw_request(gw.addr, "GET", "/public/reset", &[]).await;
    assert_error(&res, 502, "upstream_unavailable");
    // It did reach the upstream, which dropped it.
    assert_eq!(up.next_request().await.target, "/public/reset");
}

#[tokio::test]
async fn a_slow_upstream_is_504_and_does_not_hold_up_other_requests() {
    let up = Upstream::start().await;
    let extra = format!(
        "[[routes]]\npath = \"/slow\"\nupstream = \"{}\"\nauth = \"none\"\ntimeout = \"300ms\"\n",
        up.url()
    );
    let gw = gateway_with(&up, &extra).await;
    let addr = gw.addr;
    let started = Instant::now();
    let held = tokio::spawn(async move { raw_request(addr, "GET", "/slow/hold", &[]).await });

    // While the upstream sits on it, others are served.
    assert_eq!(up.next_request().await.target, "/slow/hold");
    let res = raw_request(gw.addr, "GET", "/public/during", &[]).await;
    assert_eq!(res.status, 200, "{res:?}");
    assert_eq!(up.next_request().await.target, "/public/during");

    let res = held.await.unwrap();
    assert_error(&res, 504, "upstream_timeout");
    assert!(started.elapsed() < Duration::from_secs(10));

    let res = raw_request(gw.addr, "GET", "/slow/after", &[]).await;
    assert_eq!(res.status, 200, "{res:?}");
    assert_eq!(up.next_request().await.target, "/slow/after");
    up.release_hold();
}

/// Over HTTP/1 the connection's driver times the upstream wait: a route
/// timeout longer than the driver's own checks (every `header_timeout`
/// while a request is in flight) still ends the wait at the timeout, not
/// at an earlier check, and over HTTP/2 its own timer does.
#[tokio::test]
async fn a_route_timeout_longer_than_header_timeout_is_kept_over_both_protocols() {
    const TIMEOUT: Duration = Duration::from_millis(900);
    let up = Upstream::start().await;
    let toml = base_config(&up.url(), &nowhere())
        .edit("[server]\n", "[server]\nheader_timeout = \"200ms\"\n")
        + &format!(
            "[[routes]]\npath = \"/slow\"\nupstream = \"{}\"\nauth = \"none\"\ntimeout = \"900ms\"\n",
            up.url()
        );
    let gw = TestGateway::start(&toml).await;

    let started = Instant::now();
    let res = raw_request(gw.addr, "GET", "/slow/hold", &[]).await;
    let waited = started.elapsed();
    assert_error(&res, 504, "upstream_timeout");
    assert!(waited >= TIMEOUT, "504 after {waited:?}");
    assert!(waited < Duration::from_secs(10), "504 after {waited:?}");

    let (mut h2, _conn) = h2_connect(gw.addr).await;
    let started = Instant::now();
    let req = http::Request::get(format!("http://{}/slow/hold", gw.addr))
        .body(http_body_util::Empty::<bytes::Bytes>::new())
        .unwrap();
    let res = h2.send_request(req).await.unwrap();
    let waited = started.elapsed();
    assert_eq!(res.status(), 504);
    assert!(waited >= TIMEOUT, "504 after {waited:?}");
    assert!(waited < Duration::from_secs(10), "504 after {waited:?}");
    up.release_hold();
}

#[tokio::test]
async fn upstream_connections_are_pooled_across_client_connections() {
    let up = Upstream::start().await;
    let gw = gateway_with(&up, "").await;
    for i in 0..20 {
        let target = format!("/public/n{i}");
        let res = raw_request(gw.addr, "GET", &target, &[("Connection", "close")]).await;
        assert_eq!(res.status, 200, "{res:?}");
        let got = up.next_request().await;
        assert_eq!(got.target, target);
        // The client's `Connection: close` is its own business.
        assert_eq!(got.header("connection"), None);
    }
    assert_eq!(up.requests().len(), 20);
    assert_eq!(up.connections(), 1, "one after another, on one connection");
    // Chunked and empty answers give their connection back too.
    for target in ["/public/download/300000", "/public/status/204", "/public/y"] {
        let res = raw_request(gw.addr, "GET", target, &[]).await;
        assert!(res.status == 200 || res.status == 204, "{res:?}");
    }
    assert_eq!(up.connections(), 1);
}

/// An upstream that announces keep-alive but closes every connection right
/// after its first answer (its keep-alive timeout racing the gateway).
/// Returns its address and the number of connections it accepted.
async fn closing_upstream() -> (std::net::SocketAddr, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = accepted.clone();
    tokio::spawn(async move {
        loop {
            let (mut stream, _) = listener.accept().await.unwrap();
            count.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") {
                    if stream.read(&mut byte).await.unwrap_or(0) == 0 {
                        return;
                    }
                    head.push(byte[0]);
                }
                let answer =
                    "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: keep-alive\r\n\r\nok";
                let _ = stream.write_all(answer.as_bytes()).await;
                // Dropped: closed with no further word.
            });
        }
    });
    (addr, accepted)
}

#[tokio::test]
async fn an_upstream_closing_idle_connections_costs_no_request() {
    let (addr, accepted) = closing_upstream().await;
    let up = Upstream::start().await;
    let extra =
        format!("[[routes]]\npath = \"/closing\"\nupstream = \"http://{addr}\"\nauth = \"none\"\n");
    let gw = gateway_with(&up, &extra).await;
    for i in 0..20 {
        let res = raw_request(gw.addr, "GET", &format!("/closing/{i}"), &[]).await;
        assert_eq!(res.status, 200, "request {i}: {res:?}");
        assert_eq!(res.body, "ok");
    }
    assert_eq!(accepted.load(Ordering::SeqCst), 20);
}

const KEEP_ALIVE: &[(&str, &str)] = &[("Connection", "keep-alive")];

/// The race itself: the upstream closes an idle connection just as the
/// gateway picks it for a request. The request, never written, is sent on a
/// new connection instead of failing.
#[tokio::test]
async fn a_request_on_a_connection_closed_under_it_is_sent_again() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let close_first = Arc::new(tokio::sync::Notify::new());
    let close = close_first.clone();
    tokio::spawn(async move {
        let answer = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
        let (mut first, _) = listener.accept().await.unwrap();
        let mut buf = [0u8; 4096];
        let _ = first.read(&mut buf).await.unwrap();
        first.write_all(answer).await.unwrap();
        close.notified().await;
        drop(first);
        let (mut second, _) = listener.accept().await.unwrap();
        let n = second.read(&mut buf).await.unwrap();
        assert!(
            buf[..n].starts_with(b"GET /closing/second "),
            "{:?}",
            &buf[..n]
        );
        second.write_all(answer).await.unwrap();
        std::future::pending::<()>().await;
    });
    let up = Upstream::start().await;
    let extra =
        format!("[[routes]]\npath = \"/closing\"\nupstream = \"http://{addr}\"\nauth = \"none\"\n");
    let gw = gateway_with(&up, &extra).await;
    let mut client = TcpStream::connect(gw.addr).await.unwrap();
    client
        .write_all(&http_request("GET", "/closing/first", KEEP_ALIVE))
        .await
        .unwrap();
    let (head, _) = read_head(&mut client).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    // The close and the next request reach the gateway together.
    client
        .write_all(&http_request("GET", "/closing/second", KEEP_ALIVE))
        .await
        .unwrap();
    close_first.notify_one();
    let (head, _) = read_head(&mut client).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
}

#[tokio::test]
async fn a_download_the_client_abandons_does_not_return_its_connection() {
    let up = Upstream::start().await;
    let gw = gateway_with(&up, "").await;
    let mut stream = TcpStream::connect(gw.addr).await.unwrap();
    stream
        .write_all(&http_request("GET", "/public/download/100000000", &[]))
        .await
        .unwrap();
    let (head, _) = read_head(&mut stream).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    drop(stream);
    // The upstream connection is mid-answer: never handed to another request.
    let res = raw_request(gw.addr, "GET", "/public/after", &[]).await;
    assert_eq!(res.status, 200, "{res:?}");
    assert_eq!(up.next_request().await.target, "/public/download/100000000");
    assert_eq!(up.next_request().await.target, "/public/after");
    assert_eq!(up.connections(), 2);
}

/// Reads until the end of a response head; returns the head and whatever
/// arrived after it.
async fn read_head(stream: &mut TcpStream) -> (String, Vec<u8>) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let rest = buf.split_off(end + 4);
            return (String::from_utf8_lossy(&buf).into_owned(), rest);
        }
        let n = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut chunk))
            .await
            .expect("response head in time")
            .unwrap();
        assert!(n > 0, "closed before a full head: {buf:?}");
        buf.extend_from_slice(&chunk[..n]);
    }
}

async fn read_exact(stream: &mut TcpStream, n: usize) -> Vec<u8> {
    let mut buf = vec![0u8; n];
    tokio::time::timeout(Duration::from_secs(10), stream.read_exact(&mut buf))
        .await
        .expect("echo in time")
        .unwrap();
    buf
}

/// A WebSocket handshake for `/api/ws`; `connection` is the Connection header.
fn upgrade_request(auth: Option<&str>, connection: &str) -> Vec<u8> {
    let mut headers = vec![
        ("Connection", connection),
        ("Upgrade", "websocket"),
        ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
        ("Sec-WebSocket-Version", "13"),
        ("X-WX-OpenID", "spoof"),
    ];
    if let Some(auth) = auth {
        headers.push(("Authorization", auth));
    }
    http_request("GET", "/api/ws", &headers)
}

#[tokio::test]
async fn websocket_upgrade_is_authenticated_and_spliced() {
    let up = Upstream::start().await;
    let gw = gateway_with(&up, "").await;
    let auth = bearer(&token(&gw.gw, "o-alice"));

    let mut stream = TcpStream::connect(gw.addr).await.unwrap();
    stream
        .write_all(&upgrade_request(Some(&auth), "Upgrade"))
        .await
        .unwrap();
    let (head, early) = read_head(&mut stream).await;
    assert!(early.is_empty(), "{early:?}");
    let res = RawResponse::parse(&head);
    assert_eq!(res.status, 101, "{head}");
    assert!(res
        .header("upgrade")
        .is_some_and(|u| u.eq_ignore_ascii_case("websocket")));

    let got = up.next_request().await;
    assert_eq!(got.target, "/api/ws");
    assert_eq!(got.header_all("x-wx-openid"), ["o-alice"]);
    assert_eq!(got.header_all("x-wx-appid"), [APPID]);
    assert_eq!(got.header("authorization"), None);
    assert_eq!(
        got.header("sec-websocket-key"),
        Some("dGhlIHNhbXBsZSBub25jZQ==")
    );
    assert!(got
        .header("upgrade")
        .is_some_and(|u| u.eq_ignore_ascii_case("websocket")));

    // Bytes both ways, several rounds, including a larger one.
    for msg in [
        b"ping-1".to_vec(),
        vec![0xA5; 100_000],
        b"\x00\xff last".to_vec(),
    ] {
        stream.write_all(&msg).await.unwrap();
        assert_eq!(read_exact(&mut stream, msg.len()).await, msg);
    }
    // Half-close: the upstream echoes to EOF and closes its side too.
    stream.shutdown().await.unwrap();
    let rest = read_to_close(&mut stream).await;
    assert!(rest.is_empty(), "{rest:?}");
    assert_eq!(up.requests().len(), 1);
}

#[tokio::test]
async fn websocket_upgrade_without_token_is_401_and_not_forwarded() {
    let up = Upstream::start().await;
    let gw = gateway_with(&up, "").await;
    // `close` too, so that the refused connection ends with the answer.
    let res = RawResponse::parse(&raw(gw.addr, &upgrade_request(None, "Upgrade, close")).await);
    assert_error(&res, 401, "missing_token");
    let junk = upgrade_request(Some("Bearer junk"), "Upgrade, close");
    let res = RawResponse::parse(&raw(gw.addr, &junk).await);
    assert_error(&res, 401, "invalid_token");
    assert!(up.requests().is_empty(), "{:#?}", up.requests());
}

#[tokio::test]
async fn response_trailers_pass_when_the_client_accepts_them() {
    let up = Upstream::start().await;
    let gw = gateway_with(&up, "").await;
    let res = raw_request(gw.addr, "GET", "/public/trailers", &[("TE", "trailers")]).await;
    assert_eq!(res.status, 200, "{res:?}");
    assert_eq!(res.body, "body with trailers\n");
    assert_eq!(
        res.trailers,
        [("x-trailer".to_owned(), "yes".to_owned())],
        "{res:?}"
    );
    // The upstream was asked for trailers on the client's behalf.
    assert_eq!(up.next_request().await.header("te"), Some("trailers"));

    // A client that did not say it accepts trailers gets the body alone.
    let res = raw_request(gw.addr, "GET", "/public/trailers", &[]).await;
    assert_eq!(res.status, 200, "{res:?}");
    assert_eq!(res.body, "body with trailers\n");
    assert!(res.trailers.is_empty(), "{res:?}");
}

#[tokio::test]
async fn http2_clients_get_the_same_auth_and_header_rules() {
    use http_body_util::{BodyExt, Empty};

    let up = Upstream::start().await;
    let gw = gateway_with(&up, "").await;
    let auth = bearer(&token(&gw.gw, "o-h2"));

    let (mut sender, _conn) = h2_connect(gw.addr).await;
    let mut send = |path: &str, auth: Option<&str>| {
        let mut req = http::Request::get(format!("http://front.example{path}?q=1"))
            .header("x-wx-openid", "spoof")
            .header("x_wx_unionid", "spoof");
        if let Some(auth) = auth {
            req = req.header("authorization", auth);
        }
        sender.send_request(req.body(Empty::<bytes::Bytes>::new()).unwrap())
    };

    let res = send("/api/x", None).await.unwrap();
    assert_eq!(res.status(), 401);
    let res = send("/api/x", Some(&auth)).await.unwrap();
    assert_eq!(res.status(), 200);
    let body = res.into_body().collect().await.unwrap().to_bytes();
    assert!(body.starts_with(b"{\"ok\":true"), "{body:?}");

    let got = up.next_request().await;
    assert_eq!(got.target, "/api/x?q=1");
    assert_eq!(got.header_all("x-wx-openid"), ["o-h2"]);
    assert_eq!(got.header("x-wx-unionid"), None);
    assert_eq!(got.header("x_wx_unionid"), None);
    assert_eq!(got.header("authorization"), None);
    assert_eq!(got.header_all("x-forwarded-host"), ["front.example"]);
    assert_eq!(got.header_all("host"), [up.addr().to_string().as_str()]);
    assert_eq!(up.requests().len(), 1);
}

//! The forwarding itself: upstream failures, timeouts, connection pooling,
//! WebSocket upgrades and response trailers.

mod common;

use std::time::{Duration, Instant};

use common::upstream::Upstream;
use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

#[tokio::test]
async fn a_refused_upstream_is_502_upstream_unavailable() {
    let up = Upstream::start().await;
    let down = closed_port().await;
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
    let conns = up.connections();
    assert!(conns <= 4, "20 requests used {conns} upstream connections");
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

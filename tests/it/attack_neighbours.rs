//! Failing neighbours: WeChat and upstreams that are slow, down, resetting
//! or answering nonsense. Each fault gets the contract's status within a
//! bounded wait, and while it is under way the gateway serves a healthy
//! request. The errcode table and which outcomes are remembered are in
//! `tests/it/login_faults.rs`; the basic upstream refusal, reset and timeout
//! in `tests/it/proxy.rs`.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::common::fake_wechat::Fault;
use crate::common::login_flow::{Answer, Setup};
use crate::common::upstream::Upstream;
use crate::common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

const BOUND: Duration = Duration::from_secs(5);

async fn assert_still_serving(gw: &TestGateway) {
    let res = tokio::time::timeout(BOUND, raw_request(gw.addr, "GET", "/public/ok", &[]))
        .await
        .expect("a healthy request waited behind a faulty neighbour");
    assert_eq!(res.status, 200, "{res:?}");
}

#[tokio::test]
async fn every_wechat_fault_gets_its_status_in_bounded_time() {
    let s = Setup::with(|c| c.edit("timeout = \"2s\"", "timeout = \"400ms\"")).await;
    let faults = [
        (Fault::Delay(Duration::from_secs(3)), 504, "wechat_timeout"),
        // The head at once, then a byte every 100 ms: the timeout covers
        // the whole answer, not just its head.
        (
            Fault::Trickle(Duration::from_millis(100)),
            504,
            "wechat_timeout",
        ),
        (Fault::Reset, 503, "wechat_unavailable"),
        (Fault::ConsumeThenDrop, 503, "wechat_unavailable"),
        (Fault::Http502Html, 503, "wechat_unavailable"),
        (Fault::Redirect302, 503, "wechat_unavailable"),
        (Fault::MalformedJson, 503, "wechat_unavailable"),
        (
            Fault::Raw("<html><body>busy</body></html>".into()),
            503,
            "wechat_unavailable",
        ),
        (
            Fault::Raw("\u{0}\u{1}\u{2}garbage".into()),
            503,
            "wechat_unavailable",
        ),
        (Fault::Raw("[1,2,3]".into()), 503, "wechat_unavailable"),
        (
            Fault::Raw(r#"{"errcode":1e400}"#.into()),
            503,
            "wechat_unavailable",
        ),
        (Fault::Errcode(-1), 503, "wechat_unavailable"),
        (Fault::Errcode(45011), 429, "rate_limited"),
        (Fault::Errcode(40013), 500, "gateway_misconfigured"),
        (Fault::Errcode(12345), 502, "wechat_error"),
    ];
    for (fault, status, code) in faults {
        let calls = s.fake.calls();
        let login_code = s.fake.mint_code(APPID, "o-alice");
        s.fake.push_fault(fault.clone());
        let url = s.gw.url("/auth/login");
        let started = Instant::now();
        let pending = tokio::spawn(async move {
            let res = client()
                .post(url)
                .header("content-type", "application/json")
                .body(serde_json::json!({ "code": login_code }).to_string())
                .send()
                .await
                .unwrap();
            Answer::read(res).await
        });
        s.fake.wait_for_calls(calls + 1).await;
        assert_still_serving(&s.gw).await;
        let answer = tokio::time::timeout(BOUND, pending)
            .await
            .unwrap_or_else(|_| panic!("{fault:?}: the login hung"))
            .unwrap();
        answer.assert_error(status, code);
        assert!(
            started.elapsed() < BOUND,
            "{fault:?}: {:?}",
            started.elapsed()
        );
        assert!(!answer.body.contains(APP_SECRET), "{fault:?}");
    }
}

#[tokio::test]
async fn wechat_down_is_503_in_bounded_time() {
    let up = Upstream::start().await;
    let closed = closed_port();
    let gw = TestGateway::start(&base_config(&up.url(), &format!("http://{closed}"))).await;
    let started = Instant::now();
    let answer =
        crate::common::login_flow::login(&gw, serde_json::json!({ "code": "abc0123456789" })).await;
    answer.assert_error(503, "wechat_unavailable");
    assert!(started.elapsed() < BOUND);
    assert_still_serving(&gw).await;
}

/// What a scripted upstream does after reading a request head.
#[derive(Clone, Copy, Debug)]
enum Then {
    /// Writes the bytes and closes.
    Close(&'static [u8]),
    /// Writes the bytes and resets the connection.
    Reset(&'static [u8]),
    /// Writes the bytes and keeps the connection open, silent.
    Hold(&'static [u8]),
}

/// A raw TCP "upstream" that answers every request with `then`.
async fn scripted(then: Then) -> (SocketAddr, JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((mut stream, _)) = listener.accept().await {
            let mut head = Vec::new();
            let mut buf = [0u8; 4096];
            while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                match stream.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => head.extend_from_slice(&buf[..n]),
                }
            }
            match then {
                Then::Close(bytes) => {
                    let _ = stream.write_all(bytes).await;
                }
                Then::Reset(bytes) => {
                    let _ = stream.write_all(bytes).await;
                    let _ = stream.set_zero_linger();
                }
                Then::Hold(bytes) => {
                    let _ = stream.write_all(bytes).await;
                    held.push(stream);
                }
            }
        }
    });
    (addr, task)
}

async fn gateway_to(up: &Upstream, faulty: SocketAddr) -> TestGateway {
    let extra = format!(
        "[[routes]]\npath = \"/faulty\"\nupstream = \"http://{faulty}\"\nauth = \"none\"\ntimeout = \"500ms\"\n"
    );
    gateway_with(up, &extra).await
}

/// Sends GET /faulty/x on a fresh connection; returns the raw answer and
/// how long it took to end.
async fn ask_faulty(gw: &TestGateway) -> (String, Duration) {
    let started = Instant::now();
    let mut stream = TcpStream::connect(gw.addr).await.unwrap();
    stream
        .write_all(&http_request("GET", "/faulty/x", &[]))
        .await
        .unwrap();
    let answer = closed_within(&mut stream, BOUND)
        .await
        .expect("the answer to a faulty upstream never ended");
    (answer, started.elapsed())
}

#[tokio::test]
async fn malformed_upstream_answers_are_502() {
    let up = Upstream::start().await;
    let cases: &[&[u8]] = &[
        b"",
        b"HELLO\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nBad Header Line\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nX: a\r\n folded: b\r\nContent-Length: 0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!",
        b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\nzz\r\n",
        b"HTTP/1.1 20 OK\r\nContent-Length: 0\r\n\r\n",
        b"HTTP/9.9 200 OK\r\nContent-Length: 0\r\n\r\n",
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n",
        b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03",
    ];
    for script in cases {
        let (faulty, task) = scripted(Then::Close(script)).await;
        let gw = gateway_to(&up, faulty).await;
        let (answer, took) = ask_faulty(&gw).await;
        let shown = String::from_utf8_lossy(script);
        assert!(took < BOUND, "{shown:?}");
        if answer.is_empty() || answer.starts_with("HTTP/1.1 200") {
            // Only the CL+TE answer may get this far (read as chunked, RFC
            // 9112), and then its bad chunk aborts the response: the client
            // sees a cut connection, never a clean 200.
            assert!(shown.contains("Transfer-Encoding"), "{shown:?}: {answer}");
            assert!(!answer.ends_with("0\r\n\r\n"), "{shown:?}: {answer}");
        } else {
            assert_error(&RawResponse::parse(&answer), 502, "upstream_unavailable");
        }
        assert_still_serving(&gw).await;
        task.abort();
    }
}

#[tokio::test]
async fn an_upstream_dying_mid_body_ends_the_client_response_early() {
    let up = Upstream::start().await;
    for then in [
        Then::Close(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly part"),
        Then::Reset(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly part"),
        Then::Close(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n9\r\nonly part\r\n"),
        Then::Reset(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n9\r\nonly part\r\n"),
    ] {
        let (faulty, task) = scripted(then).await;
        let gw = gateway_to(&up, faulty).await;
        let (answer, took) = ask_faulty(&gw).await;
        assert!(took < BOUND, "{then:?}");
        // The head went out before the body failed: the client must be able
        // to tell the body is incomplete (short of its length, or no final
        // chunk), never a complete-looking answer.
        assert!(answer.starts_with("HTTP/1.1 200"), "{then:?}: {answer}");
        let (head, body) = answer.split_once("\r\n\r\n").unwrap();
        if head.to_ascii_lowercase().contains("content-length: 100") {
            assert!(body.len() < 100, "{then:?}: {answer}");
        } else {
            assert!(!body.ends_with("0\r\n\r\n"), "{then:?}: {answer}");
        }
        assert_still_serving(&gw).await;
        task.abort();
    }
}

#[tokio::test]
async fn slow_and_silent_upstreams_are_504_in_bounded_time() {
    let up = Upstream::start().await;
    for then in [
        Then::Hold(b""),
        Then::Hold(b"HTTP/1.1 200 OK\r\n"),
        Then::Hold(b"HTTP/1.1 100 Continue\r\n\r\n"),
    ] {
        let (faulty, task) = scripted(then).await;
        let gw = gateway_to(&up, faulty).await;
        let started = Instant::now();
        let pending = {
            let addr = gw.addr;
            tokio::spawn(async move { raw_request(addr, "GET", "/faulty/x", &[]).await })
        };
        assert_still_serving(&gw).await;
        let res = tokio::time::timeout(BOUND, pending)
            .await
            .expect("hung")
            .unwrap();
        assert_error(&res, 504, "upstream_timeout");
        assert!(started.elapsed() < BOUND, "{then:?}");
        task.abort();
    }
}

#[tokio::test]
async fn an_upstream_that_answers_slowly_after_its_head_is_streamed_not_held() {
    // The head came in time: the body streams as it comes, the gateway does
    // not wait for it or cut it with the route timeout.
    let up = Upstream::start().await;
    let (faulty, task) = scripted(Then::Hold(
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nfirst\r\n",
    ))
    .await;
    let gw = gateway_to(&up, faulty).await;
    let mut stream = TcpStream::connect(gw.addr).await.unwrap();
    stream
        .write_all(&http_request("GET", "/faulty/x", &[]))
        .await
        .unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    let deadline = tokio::time::Instant::now() + BOUND;
    while !String::from_utf8_lossy(&got).contains("first") {
        let n = tokio::time::timeout_at(deadline, stream.read(&mut buf))
            .await
            .expect("the first chunk was held back")
            .unwrap();
        assert!(n > 0, "closed early: {}", String::from_utf8_lossy(&got));
        got.extend_from_slice(&buf[..n]);
    }
    assert_still_serving(&gw).await;
    task.abort();
}

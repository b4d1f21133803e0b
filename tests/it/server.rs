//! The listener's own limits (header timeout, head size, header count), the
//! admin endpoints and the graceful drain at shutdown.

use std::time::{Duration, Instant};

use crate::common::upstream::Upstream;
use crate::common::*;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

/// Generous: the configured limits under test are far shorter.
const BOUND: Duration = Duration::from_secs(10);

fn config_with_server(up: &Upstream, server_keys: &str) -> String {
    base_config(&up.url(), &nowhere()).edit("[server]\n", &format!("[server]\n{server_keys}\n"))
}

/// Reads until the peer closes (EOF or an error such as a reset); `None` if
/// it is still open after [`BOUND`].
async fn closed_within_bound(stream: &mut TcpStream) -> Option<String> {
    closed_within(stream, BOUND).await
}

/// Sends `request` (tolerating the server closing on us mid-write) and
/// returns what came back before the close.
async fn send_and_drain(addr: std::net::SocketAddr, request: &[u8]) -> String {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let _ = stream.write_all(request).await;
    closed_within_bound(&mut stream)
        .await
        .expect("the server should answer and close")
}

#[tokio::test]
async fn a_client_stalling_mid_head_is_disconnected_after_header_timeout() {
    let up = Upstream::start().await;
    let gw = TestGateway::start(&config_with_server(&up, "header_timeout = \"300ms\"")).await;
    let auth = bearer(&token(&gw.gw, "o-alice"));

    let mut stream = TcpStream::connect(gw.addr).await.unwrap();
    let partial = format!("GET /api/x HTTP/1.1\r\nHost: gw.test\r\nAuthorization: {auth}\r\nX-Slo");
    stream.write_all(partial.as_bytes()).await.unwrap();
    let started = Instant::now();
    let answer = closed_within_bound(&mut stream).await;
    assert!(
        answer.is_some(),
        "still open after {:?} with a 300ms header timeout",
        started.elapsed()
    );
    // Whatever it answered (a 408, or nothing), it was not the upstream's 200.
    let answer = answer.unwrap();
    assert!(!answer.contains("\"ok\":true"), "{answer}");
    assert!(up.requests().is_empty(), "{:#?}", up.requests());

    // The same request, completed in time, goes through.
    let res = raw_request(gw.addr, "GET", "/api/x", &[("Authorization", &auth)]).await;
    assert_eq!(res.status, 200, "{res:?}");
}

#[tokio::test]
async fn a_silent_client_is_disconnected_after_header_timeout() {
    let up = Upstream::start().await;
    let gw = TestGateway::start(&config_with_server(&up, "header_timeout = \"300ms\"")).await;
    for opening in [&b""[..], b"P", b"PRI * HTTP/2.0\r\n"] {
        let mut stream = TcpStream::connect(gw.addr).await.unwrap();
        stream.write_all(opening).await.unwrap();
        assert!(
            closed_within_bound(&mut stream).await.is_some(),
            "a client that sent {opening:?} was still connected after {BOUND:?}"
        );
    }
    assert!(up.requests().is_empty(), "{:#?}", up.requests());
}

#[tokio::test]
async fn an_idle_keep_alive_connection_is_closed_after_header_timeout() {
    let up = Upstream::start().await;
    let gw = TestGateway::start(&config_with_server(&up, "header_timeout = \"300ms\"")).await;
    let mut stream = TcpStream::connect(gw.addr).await.unwrap();
    let request = http_request("GET", "/public/k", &[("Connection", "keep-alive")]);
    stream.write_all(&request).await.unwrap();
    // The answer comes, then the connection idles until the server gives up.
    let answer = closed_within_bound(&mut stream)
        .await
        .expect("an idle connection should be closed");
    assert_eq!(RawResponse::parse(&answer).status, 200, "{answer}");
    assert_eq!(up.next_request().await.target, "/public/k");
}

/// `header_timeout` bounds the wait for the next head, counted from the
/// last answer: a request in flight for several header timeouts keeps its
/// keep-alive connection, and the idle connection after it is closed no
/// sooner than one header timeout later.
#[tokio::test]
async fn header_timeout_counts_from_the_last_answer_not_from_the_request() {
    const HEADER_TIMEOUT: Duration = Duration::from_millis(300);
    let up = Upstream::start().await;
    let gw = TestGateway::start(&config_with_server(&up, "header_timeout = \"300ms\"")).await;
    let stream = TcpStream::connect(gw.addr).await.unwrap();
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .unwrap();
    let conn = tokio::spawn(conn);
    let get = |path: &str| {
        http::Request::get(path)
            .header("host", "gw.test")
            .body(http_body_util::Empty::<bytes::Bytes>::new())
            .unwrap()
    };

    let held = sender.send_request(get("/public/hold"));
    let release = async {
        assert_eq!(up.next_request().await.target, "/public/hold");
        // The scenario, not a synchronization: the answer is held for three
        // header timeouts.
        tokio::time::sleep(3 * HEADER_TIMEOUT).await;
        up.release_hold();
    };
    let (held, ()) = tokio::join!(held, release);
    let held = held.expect("the held request is answered");
    assert_eq!(held.status(), 200);
    assert_eq!(held.headers().get("connection"), None, "{held:?}");
    drop(held);

    // Same connection, so it was neither cut nor marked for closing.
    sender.ready().await.expect("the connection is still open");
    let second = sender.send_request(get("/public/second")).await.unwrap();
    assert_eq!(second.status(), 200);
    drop(second);
    let answered = Instant::now();

    tokio::time::timeout(BOUND, conn)
        .await
        .expect("the idle connection is closed")
        .unwrap()
        .unwrap();
    let idle = answered.elapsed();
    // The answer left the server a little before it was read here.
    assert!(
        idle >= HEADER_TIMEOUT - Duration::from_millis(50),
        "closed {idle:?} after the last answer"
    );
}

fn head_with_header(name: &str, value_len: usize) -> Vec<u8> {
    let value = "v".repeat(value_len);
    http_request("GET", "/public/big", &[(name, value.as_str())])
}

#[tokio::test]
async fn a_head_over_max_header_bytes_is_431_and_not_forwarded() {
    let up = Upstream::start().await;
    let gw = TestGateway::start(&config_with_server(&up, "max_header_bytes = 16384")).await;

    let answer = send_and_drain(gw.addr, &head_with_header("X-Big", 20 * 1024)).await;
    if !answer.is_empty() {
        assert_eq!(status_of(&answer), 431, "{answer}");
    }
    assert!(up.requests().is_empty(), "{:#?}", up.requests());

    // Well under the limit is fine (the limit is not smaller than configured).
    let answer = send_and_drain(gw.addr, &head_with_header("X-Big", 12 * 1024)).await;
    assert_eq!(status_of(&answer), 200, "{answer}");
    let got = up.next_request().await;
    assert_eq!(got.header("x-big").map(str::len), Some(12 * 1024));
}

#[tokio::test]
async fn more_than_a_hundred_headers_is_431_and_not_forwarded() {
    let up = Upstream::start().await;
    let gw = TestGateway::start(&base_config(&up.url(), &nowhere())).await;
    let names: Vec<String> = (0..101).map(|i| format!("X-H-{i}")).collect();

    let headers: Vec<(&str, &str)> = names.iter().map(|n| (n.as_str(), "1")).collect();
    let answer = send_and_drain(gw.addr, &http_request("GET", "/public/many", &headers)).await;
    if !answer.is_empty() {
        assert_eq!(status_of(&answer), 431, "{answer}");
    }
    assert!(up.requests().is_empty(), "{:#?}", up.requests());

    let headers: Vec<(&str, &str)> = names[..80].iter().map(|n| (n.as_str(), "1")).collect();
    let answer = send_and_drain(gw.addr, &http_request("GET", "/public/many", &headers)).await;
    assert_eq!(status_of(&answer), 200, "{answer}");
    assert_eq!(up.next_request().await.header("x-h-79"), Some("1"));
}

#[tokio::test]
async fn admin_reports_health_and_readiness() {
    let up = Upstream::start().await;
    let gw = TestGateway::start(&base_config(&up.url(), &nowhere())).await;
    for path in ["/healthz", "/readyz"] {
        let res = client().get(gw.admin_url(path)).send().await.unwrap();
        assert_eq!(res.status(), 200, "{path}");
        let body: serde_json::Value = serde_json::from_str(&res.text().await.unwrap()).unwrap();
        assert!(body["status"].is_string(), "{path}: {body}");
    }
    let res = client().get(gw.admin_url("/nope")).send().await.unwrap();
    assert_eq!(res.status(), 404);
    // The admin endpoints are not on the main listener.
    let res = raw_request(gw.addr, "GET", "/healthz", &[]).await;
    assert_eq!(res.status, 404, "{res:?}");
}

#[tokio::test]
async fn shutdown_drains_in_flight_requests_and_refuses_new_ones() {
    let up = Upstream::start().await;
    let mut gw = TestGateway::start(&base_config(&up.url(), &nowhere())).await;
    let auth = bearer(&token(&gw.gw, "o-alice"));

    let url = gw.url("/api/hold");
    let held = {
        let auth = auth.clone();
        tokio::spawn(async move {
            let res = client()
                .get(url)
                .header("authorization", auth)
                .send()
                .await
                .unwrap();
            let status = res.status();
            (status, res.text().await.unwrap())
        })
    };
    let got = up.next_request().await;
    assert_eq!(got.target, "/api/hold");
    assert_eq!(got.header("x-wx-openid"), Some("o-alice"));

    let run = gw.begin_shutdown();

    // Readiness flips once the drain starts (the listener is closed by then).
    let deadline = Instant::now() + BOUND;
    loop {
        let res = client().get(gw.admin_url("/readyz")).send().await.unwrap();
        if res.status() == 503 {
            break;
        }
        assert_eq!(res.status(), 200);
        assert!(Instant::now() < deadline, "/readyz never reported draining");
        tokio::task::yield_now().await;
    }
    // Liveness is unaffected.
    let res = client().get(gw.admin_url("/healthz")).send().await.unwrap();
    assert_eq!(res.status(), 200);

    let refused = TcpStream::connect(gw.addr).await;
    assert!(refused.is_err(), "the main listener still accepts");
    assert!(!held.is_finished());

    up.release_hold();
    let (status, body) = tokio::time::timeout(BOUND, held)
        .await
        .expect("in-flight request finished")
        .unwrap();
    assert_eq!(status, 200);
    assert!(body.contains("\"ok\":true"), "{body}");
    tokio::time::timeout(BOUND, run)
        .await
        .expect("the gateway stopped after the drain")
        .unwrap();
    assert_eq!(up.requests().len(), 1);
}

#[tokio::test]
async fn shutdown_grace_bounds_the_drain_and_closes_what_is_left() {
    let up = Upstream::start().await;
    let toml = base_config(&up.url(), &nowhere())
        .edit("shutdown_grace = \"5s\"", "shutdown_grace = \"300ms\"");
    assert!(toml.contains("300ms"));
    let mut gw = TestGateway::start(&toml).await;

    // A request the upstream never answers.
    let mut stream = TcpStream::connect(gw.addr).await.unwrap();
    stream
        .write_all(&http_request("GET", "/public/hold", &[]))
        .await
        .unwrap();
    assert_eq!(up.next_request().await.target, "/public/hold");

    let run = gw.begin_shutdown();
    tokio::time::timeout(BOUND, run)
        .await
        .expect("the gateway stopped once the grace was over")
        .unwrap();
    // The stuck connection was closed, not left running behind the gateway.
    let answer = closed_within_bound(&mut stream).await;
    assert!(answer.is_some(), "the connection outlived the gateway");
    assert!(!answer.unwrap().contains("\"ok\":true"));
    up.release_hold();
}

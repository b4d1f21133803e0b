//! Request smuggling: framing the gateway and the upstream might read
//! differently. Every payload hides a second request for a protected path
//! (`/api/smuggled`, no token); whatever the gateway makes of the bytes,
//! that request must never reach the upstream, and what does reach it is
//! framed one way only (hyper's client re-frames every body). Assertions are
//! on what the recording upstream received.

use std::time::Duration;

use crate::common::upstream::{Received, Upstream};
use crate::common::*;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

const SMUGGLED: &str = "GET /api/smuggled HTTP/1.1\r\nHost: gw.test\r\n\r\n";

/// What the upstream got is unambiguous and never the hidden request.
fn assert_clean(up: &Upstream, what: &str) -> Vec<Received> {
    let got = up.requests();
    for r in &got {
        assert!(
            !r.target.contains("smuggled"),
            "{what}: smuggled through: {r:?}"
        );
        let cl = r.header_all("content-length");
        let te = r.header_all("transfer-encoding");
        assert!(cl.len() <= 1, "{what}: {r:?}");
        assert!(cl.is_empty() || te.is_empty(), "{what}: CL and TE: {r:?}");
        assert!(te.iter().all(|v| *v == "chunked"), "{what}: TE {te:?}");
    }
    got
}

fn statuses(answer: &str) -> Vec<u16> {
    answer
        .match_indices("HTTP/1.1 ")
        .filter_map(|(i, _)| answer[i + 9..i + 12].parse().ok())
        .collect()
}

/// The last request on every connection here, so the gateway closes it.
const END: &str = "GET /public/end HTTP/1.1\r\nHost: gw.test\r\nConnection: close\r\n\r\n";

/// Sends a head with `framing` headers, then `body`, then [`END`], on one
/// connection; returns every status seen, [`END`]'s last if it was read.
async fn send(gw: &TestGateway, framing: &str, body: &str) -> Vec<u16> {
    let request = format!("POST /public/x HTTP/1.1\r\nHost: gw.test\r\n{framing}\r\n{body}{END}");
    let mut stream = TcpStream::connect(gw.addr).await.unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    statuses(&read_to_close(&mut stream).await)
}

async fn setup() -> (Upstream, TestGateway) {
    let up = Upstream::start().await;
    let gw = gateway_with(&up, "").await;
    (up, gw)
}

#[tokio::test]
async fn cl_te_and_te_cl_never_smuggle_a_request() {
    let (up, gw) = setup().await;
    let cases = [
        // CL.TE: a front end reading Content-Length forwards the lot.
        (
            "Content-Length: 6\r\nTransfer-Encoding: chunked\r\n".to_owned(),
            format!("0\r\n\r\n{SMUGGLED}"),
        ),
        // TE.CL: a back end reading Content-Length stops early.
        (
            "Content-Length: 4\r\nTransfer-Encoding: chunked\r\n".to_owned(),
            format!("{:x}\r\n{SMUGGLED}\r\n0\r\n\r\n", SMUGGLED.len()),
        ),
        (
            "Transfer-Encoding: chunked\r\nContent-Length: 200\r\n".to_owned(),
            format!("0\r\n\r\n{SMUGGLED}"),
        ),
    ];
    for (framing, body) in &cases {
        let seen = send(&gw, framing, body).await;
        // Either refused outright, or read as chunked (RFC 9112 §6.3), and
        // then the hidden request is just a request without a token.
        // Both headers: hyper reads chunked and closes after answering
        // (RFC 9112 §6.1), so nothing behind the body is read at all.
        assert!(seen == [200] || seen == [400], "{framing:?}: {seen:?}");
    }
    assert_clean(&up, "CL/TE");
}

#[tokio::test]
async fn duplicate_and_malformed_content_lengths_are_400() {
    let (up, gw) = setup().await;
    for cl in [
        "Content-Length: 5\r\nContent-Length: 6\r\n",
        "Content-Length: 5, 6\r\n",
        "Content-Length: +5\r\n",
        "Content-Length: -5\r\n",
        "Content-Length: 0x5\r\n",
        "Content-Length: 5 5\r\n",
        "Content-Length: 5.0\r\n",
        "Content-Length: 99999999999999999999999\r\n",
        "Content-Length: \r\n",
        "Content-Length: 5\x0b\r\n",
    ] {
        let seen = send(&gw, cl, &format!("hello{SMUGGLED}")).await;
        assert_eq!(seen, [400], "{cl:?}: the connection must close after");
    }
    assert_eq!(assert_clean(&up, "CL").len(), 0);
}

#[tokio::test]
async fn transfer_encoding_obfuscations_are_refused_or_read_as_chunked() {
    let (up, gw) = setup().await;
    let body = format!("5\r\nhello\r\n0\r\n\r\n{SMUGGLED}");
    // Spellings that are chunked by the RFC: read as chunked.
    for te in [
        "Transfer-Encoding: Chunked\r\n",
        "Transfer-Encoding: CHUNKED\r\n",
        "Transfer-Encoding:  chunked\r\n",
        "Transfer-Encoding:\tchunked\r\n",
        "Transfer-Encoding: chunked\t\r\n",
    ] {
        let before = up.requests().len();
        let seen = send(&gw, te, &body).await;
        // The body, then the request behind it (no token: 401), then END.
        assert_eq!(seen, [200, 401, 200], "{te:?}");
        let got = up.requests();
        assert_eq!(got.len(), before + 2, "{te:?}");
        assert_eq!(got[before].body_len, 5, "{te:?}");
        assert_eq!(got[before + 1].target, "/public/end", "{te:?}");
    }
    // Spellings where chunked is not the final coding, not chunked at all,
    // or said twice in two ways: never forwarded with a guessed framing.
    for te in [
        "Transfer-Encoding: chunked, identity\r\n",
        "Transfer-Encoding: identity\r\n",
        "Transfer-Encoding: xchunked\r\n",
        "Transfer-Encoding: chunkedx\r\n",
        "Transfer-Encoding: chunk\r\n",
        "Transfer-Encoding: gzip\r\n",
        "Transfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\n",
        "Transfer-Encoding: \"chunked\"\r\n",
        "Transfer-Encoding: chunked;q=1\r\n",
        "Transfer_Encoding: chunked\r\nContent-Length: 22\r\n",
        " Transfer-Encoding: chunked\r\n",
        "Transfer-Encoding : chunked\r\n",
        "Transfer-Encoding\t: chunked\r\n",
        "X: y\r\n Transfer-Encoding: chunked\r\n",
    ] {
        let before = up.requests().len();
        let seen = send(&gw, te, &body).await;
        let got = up.requests();
        if seen.first() == Some(&200) {
            // Accepted only as a body the upstream got framed one way.
            assert!(got.len() <= before + 3, "{te:?}: {seen:?}");
        } else {
            assert!(
                seen.len() == 1 && matches!(seen[0], 400 | 411 | 501),
                "{te:?}: {seen:?}"
            );
            assert_eq!(got.len(), before, "{te:?} was forwarded after {seen:?}");
        }
    }
    assert_clean(&up, "TE");
}

#[tokio::test]
async fn bad_chunk_sizes_end_the_request_and_smuggle_nothing() {
    let (up, gw) = setup().await;
    let te = "Transfer-Encoding: chunked\r\n";
    for chunks in [
        "fffffffffffffffffffff\r\nhello\r\n0\r\n\r\n".to_owned(),
        "-5\r\nhello\r\n0\r\n\r\n".to_owned(),
        "0x5\r\nhello\r\n0\r\n\r\n".to_owned(),
        "+5\r\nhello\r\n0\r\n\r\n".to_owned(),
        "5 5\r\nhello\r\n0\r\n\r\n".to_owned(),
        "z\r\nhello\r\n0\r\n\r\n".to_owned(),
        "\r\nhello\r\n0\r\n\r\n".to_owned(),
        "3\r\nhello\r\n0\r\n\r\n".to_owned(),
        "5\r\nhello0\r\n\r\n".to_owned(),
        "5\nhello\n0\n\n".to_owned(),
        format!("5\r\nhello\r\n0\r\n{SMUGGLED}"),
    ] {
        let before = up.requests().len();
        let seen = send(&gw, te, &format!("{chunks}{SMUGGLED}")).await;
        // A body that fails mid-stream may already have a 200 head from the
        // upstream: never a second 200, and never a complete forwarded body.
        assert!(
            seen.iter().skip(1).all(|s| *s != 200),
            "{chunks:?}: {seen:?}"
        );
        let forwarded: Vec<_> = up.requests()[before..].to_vec();
        assert!(
            forwarded.iter().all(|r| r.body_len <= 5),
            "{chunks:?}: {forwarded:?}"
        );
    }
    assert_clean(&up, "chunks");
}

#[tokio::test]
async fn each_pipelined_request_is_authorized_on_its_own() {
    let (up, gw) = setup().await;
    let auth = bearer(&token(&gw.gw, "o-alice"));
    let pipeline = format!(
        "GET /api/first HTTP/1.1\r\nHost: gw.test\r\nAuthorization: {auth}\r\n\r\n\
         GET /api/second HTTP/1.1\r\nHost: gw.test\r\n\r\n\
         GET /api/third HTTP/1.1\r\nHost: gw.test\r\nAuthorization: Bearer nope\r\n\r\n\
         GET /api/fourth HTTP/1.1\r\nHost: gw.test\r\nAuthorization: {auth}\r\nConnection: close\r\n\r\n"
    );
    let answer = raw(gw.addr, pipeline.as_bytes()).await;
    assert_eq!(statuses(&answer), [200, 401, 401, 200], "{answer}");
    let got: Vec<String> = up.requests().into_iter().map(|r| r.target).collect();
    assert_eq!(got, ["/api/first", "/api/fourth"]);
    for r in up.requests() {
        assert_eq!(r.header_all("x-wx-openid"), ["o-alice"]);
    }
}

#[tokio::test]
async fn an_unread_body_after_an_early_401_is_never_read_as_a_request() {
    let (up, gw) = setup().await;
    // The body is a whole request for a public path: were it parsed as the
    // next request, the upstream would see /public/smuggled.
    let hidden = "GET /public/smuggled HTTP/1.1\r\nHost: gw.test\r\n\r\n";
    for expect in ["", "Expect: 100-continue\r\n"] {
        let head = format!(
            "POST /api/x HTTP/1.1\r\nHost: gw.test\r\n{expect}Content-Length: {}\r\n\r\n",
            hidden.len()
        );
        let mut stream = TcpStream::connect(gw.addr).await.unwrap();
        stream.write_all(head.as_bytes()).await.unwrap();
        // Read the 401 before sending the body.
        let mut seen = Vec::new();
        let mut buf = [0u8; 4096];
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while !String::from_utf8_lossy(&seen).contains("\r\n\r\n") {
            use tokio::io::AsyncReadExt;
            let n = tokio::time::timeout_at(deadline, stream.read(&mut buf))
                .await
                .expect("the 401 comes without the body")
                .unwrap();
            assert!(n > 0, "closed without an answer");
            seen.extend_from_slice(&buf[..n]);
        }
        let head_text = String::from_utf8_lossy(&seen).into_owned();
        assert!(head_text.starts_with("HTTP/1.1 401"), "{head_text}");
        assert!(!head_text.contains("100 Continue"), "{head_text}");
        // Now the body, then a real request behind it.
        let _ = stream.write_all(hidden.as_bytes()).await;
        let _ = stream
            .write_all(b"GET /public/after HTTP/1.1\r\nHost: gw.test\r\nConnection: close\r\n\r\n")
            .await;
        let rest = read_to_close(&mut stream).await;
        let all = format!("{head_text}{rest}");
        // hyper either closes (the body unread) or reads the body as a body.
        assert!(statuses(&all).len() <= 2, "{all}");
    }
    let got: Vec<String> = assert_clean(&up, "expect")
        .into_iter()
        .map(|r| r.target)
        .collect();
    assert!(got.iter().all(|t| t == "/public/after"), "{got:?}");
}

#[tokio::test]
async fn h2c_upgrade_is_not_honoured_or_passed_on() {
    let (up, gw) = setup().await;
    let auth = bearer(&token(&gw.gw, "o-alice"));
    for (path, auth) in [("/public/x", None), ("/api/x", Some(auth.as_str()))] {
        let mut head = format!(
            "GET {path} HTTP/1.1\r\nHost: gw.test\r\nConnection: Upgrade, HTTP2-Settings\r\n\
             Upgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n"
        );
        if let Some(auth) = auth {
            head.push_str(&format!("Authorization: {auth}\r\n"));
        }
        head.push_str("\r\n");
        let mut stream = TcpStream::connect(gw.addr).await.unwrap();
        stream.write_all(head.as_bytes()).await.unwrap();
        // An h2c client would now speak HTTP/2: if anything tunnelled it,
        // this preface and request would reach the upstream as bytes.
        stream
            .write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
            .await
            .unwrap();
        let _ = stream.shutdown().await;
        let answer = read_to_close(&mut stream).await;
        let seen = statuses(&answer);
        assert_eq!(seen.first(), Some(&200), "{answer}");
        assert!(!seen.contains(&101), "{answer}");
    }
    let got = assert_clean(&up, "h2c");
    assert_eq!(got.len(), 2);
    for r in got {
        for name in ["upgrade", "http2-settings", "connection"] {
            assert_eq!(r.header(name), None, "{name} passed on: {r:?}");
        }
    }
}

#[tokio::test]
async fn websocket_without_token_on_a_protected_route_is_never_tunnelled() {
    let (up, gw) = setup().await;
    let head =
        "GET /api/ws HTTP/1.1\r\nHost: gw.test\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
                Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n";
    let mut stream = TcpStream::connect(gw.addr).await.unwrap();
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(SMUGGLED.as_bytes()).await.unwrap();
    let _ = stream.shutdown().await;
    let answer = read_to_close(&mut stream).await;
    assert_eq!(statuses(&answer), [401, 401], "{answer}");
    assert_eq!(assert_clean(&up, "ws").len(), 0);
}

#[tokio::test]
async fn framing_headers_spelled_with_underscores_never_reach_the_upstream() {
    // hyper frames by the real names; an upstream that reads `_` as `-`
    // would frame by these, and two framings of one body is smuggling.
    let (up, gw) = setup().await;
    let head = "POST /public/x HTTP/1.1\r\nHost: gw.test\r\nContent-Length: 5\r\n\
                Transfer_Encoding: chunked\r\ncontent_length: 500\r\nKeep_Alive: timeout=600\r\n\
                Proxy_Connection: keep-alive\r\nX_Custom: kept\r\nConnection: close\r\n\r\nhello";
    let res = RawResponse::parse(&raw(gw.addr, head.as_bytes()).await);
    assert_eq!(res.status, 200, "{res:?}");
    let got = up.last().unwrap();
    assert_eq!(got.body_len, 5);
    for name in [
        "transfer_encoding",
        "content_length",
        "keep_alive",
        "proxy_connection",
    ] {
        assert_eq!(
            got.header(name),
            None,
            "{name} reached the upstream: {got:?}"
        );
    }
    assert_eq!(got.header("x_custom"), Some("kept"));
    assert_clean(&up, "underscores");
}

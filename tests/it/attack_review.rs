//! What the hostile review of issue 16 found in header trust and framing,
//! each checked on both ways to an upstream: the pool's own connections (a
//! request with no body, or a small one of known length) and hyper-util's
//! client (a chunked body).

use crate::common::upstream::{Received, Upstream};
use crate::common::*;

/// A request for `/public/x` with `headers`: without a body (the pool's
/// path), or with a chunked one (hyper's client).
fn request(chunked: bool, headers: &[(&str, &str)]) -> Vec<u8> {
    let mut all = headers.to_vec();
    if chunked {
        all.push(("Transfer-Encoding", "chunked"));
    }
    let mut bytes = http_request(if chunked { "POST" } else { "GET" }, "/public/x", &all);
    if chunked {
        bytes.extend_from_slice(b"5\r\nhello\r\n0\r\n\r\n");
    }
    bytes
}

async fn send(gw: &TestGateway, up: &Upstream, bytes: &[u8]) -> Received {
    let res = RawResponse::parse(&raw(gw.addr, bytes).await);
    assert_eq!(res.status, 200, "{res:?}");
    up.next_request().await
}

#[tokio::test]
async fn underscore_spellings_of_client_address_headers_never_reach_the_upstream() {
    let up = Upstream::start().await;
    let gw = gateway_with(&up, "").await;
    let spoofs = [
        ("X_Real_IP", "6.6.6.6"),
        ("X_Forwarded_For", "6.6.6.6"),
        ("X_Forwarded_Host", "evil.example"),
        ("X_Forwarded_Proto", "https"),
        ("X_Request_Id", "forged-id"),
        ("X_Custom", "kept"),
    ];
    for chunked in [false, true] {
        let got = send(&gw, &up, &request(chunked, &spoofs)).await;
        for (name, _) in &spoofs[..5] {
            assert_eq!(got.header(name), None, "{name} passed (chunked: {chunked})");
        }
        assert!(
            !got.headers.iter().any(|(_, v)| v.contains("6.6.6.6")
                || v.contains("evil.example")
                || v == "forged-id"),
            "{got:?}"
        );
        // A name with `_` that wxgate does not control passes as it is.
        assert_eq!(got.header("x_custom"), Some("kept"), "{got:?}");
    }
}

#[tokio::test]
async fn a_clients_connection_header_cannot_delete_what_wxgate_sets() {
    let up = Upstream::start().await;
    let gw = gateway_with(&up, "").await;
    let naming = [(
        "Connection",
        "host, x-request-id, x-forwarded-for, content-length",
    )];
    for chunked in [false, true] {
        let got = send(&gw, &up, &request(chunked, &naming)).await;
        let host = up.addr().to_string();
        assert_eq!(got.header("host"), Some(host.as_str()), "{got:?}");
        assert!(got.header("x-request-id").is_some(), "{got:?}");
        assert_eq!(got.header("x-forwarded-for"), Some("127.0.0.1"), "{got:?}");
        if chunked {
            assert_eq!(got.body_len, 5, "{got:?}");
        }
    }
}

#[tokio::test]
async fn request_trailers_pass_the_same_per_peer_filter_as_the_head() {
    let up = Upstream::start().await;
    // A custom token header, not forwarded (the default).
    let gw = gateway_with(&up, "").await;
    let config = base_config(&up.url(), "http://127.0.0.1:1")
        .edit("[auth]\n", "[auth]\ntoken_header = \"X-Token\"\n");
    let custom = TestGateway::start(&config).await;
    for (gw, trailer_names) in [
        (&gw, "X-Real-IP, Forwarded, X_Real_IP, X-Checksum"),
        (&custom, "X-Token, X-Checksum"),
    ] {
        let mut bytes = http_request(
            "POST",
            "/public/x",
            &[("Transfer-Encoding", "chunked"), ("Trailer", trailer_names)],
        );
        bytes.extend_from_slice(
            b"5\r\nhello\r\n0\r\nX-Real-IP: 6.6.6.6\r\nForwarded: for=6.6.6.6\r\n\
              X_Real_IP: 6.6.6.6\r\nX-Token: the-token\r\nX-Checksum: abc\r\n\r\n",
        );
        let got = send(gw, &up, &bytes).await;
        // The checksum passes, so the others' absence is the filter's doing.
        assert_eq!(
            got.trailers,
            [("x-checksum".to_owned(), "abc".to_owned())],
            "{got:?}"
        );
    }
}

/// An upstream that answers every request with `head` and `body`, on one
/// connection after another, and counts connections.
async fn scripted_upstream(
    answer: &'static [u8],
) -> (
    std::net::SocketAddr,
    std::sync::Arc<std::sync::atomic::AtomicUsize>,
) {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let connections = std::sync::Arc::new(AtomicUsize::new(0));
    let count = connections.clone();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            count.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let mut buf = vec![0u8; 8192];
                let mut seen = Vec::new();
                loop {
                    let Ok(n) = stream.read(&mut buf).await else {
                        return;
                    };
                    if n == 0 {
                        return;
                    }
                    seen.extend_from_slice(&buf[..n]);
                    // One answer per request head read.
                    while let Some(end) = seen.windows(4).position(|w| w == b"\r\n\r\n") {
                        seen.drain(..end + 4);
                        if stream.write_all(answer).await.is_err() {
                            return;
                        }
                    }
                }
            });
        }
    });
    (addr, connections)
}

#[tokio::test]
async fn an_answer_with_both_transfer_encoding_and_content_length_is_framed_by_its_coding() {
    // 11 bytes in chunks, and a length of 3 that would cut them.
    let (addr, _) = scripted_upstream(
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n\
          5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n",
    )
    .await;
    let gw = TestGateway::start(&base_config(
        &format!("http://{addr}"),
        "http://127.0.0.1:1",
    ))
    .await;
    let res = RawResponse::parse(&raw(gw.addr, &request(false, &[("Connection", "close")])).await);
    assert_eq!(res.status, 200, "{res:?}");
    assert_eq!(res.body, "hello world", "{res:?}");
    assert_ne!(res.header("content-length"), Some("3"), "{res:?}");
}

#[tokio::test]
async fn a_bodiless_answer_that_declared_a_body_ends_its_upstream_connection() {
    use std::sync::atomic::Ordering;
    // A 204 that declares 9 bytes: if they came after all, a reused
    // connection would read them as the next request's answer.
    let (addr, connections) =
        scripted_upstream(b"HTTP/1.1 204 No Content\r\nContent-Length: 9\r\n\r\n").await;
    let gw = TestGateway::start(&base_config(
        &format!("http://{addr}"),
        "http://127.0.0.1:1",
    ))
    .await;
    for _ in 0..3 {
        let res =
            RawResponse::parse(&raw(gw.addr, &request(false, &[("Connection", "close")])).await);
        assert_eq!(res.status, 204, "{res:?}");
    }
    assert_eq!(
        connections.load(Ordering::SeqCst),
        3,
        "a connection was reused"
    );
}

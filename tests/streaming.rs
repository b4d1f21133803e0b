//! Bodies stream through the gateway in both directions: a 100 MB upload and
//! a 100 MB download pass while the process's peak memory barely moves.
//! Alone in this file (so alone in its process) because it measures RSS.

#[path = "it/common/mod.rs"]
mod common;

use common::upstream::Upstream;
use common::*;
use http_body_util::BodyExt;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

const TOTAL: u64 = 100 * 1024 * 1024;
const MAX_GROWTH_KIB: u64 = 60 * 1024;

/// Peak resident set size of this process so far, in KiB.
fn peak_rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM in /proc/self/status")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn hundred_megabyte_bodies_stream_both_ways_in_bounded_memory() {
    let up = Upstream::start().await;
    let gw = TestGateway::start(&base_config(&up.url(), &nowhere())).await;
    let auth = bearer(&token(&gw.gw, "o-alice"));
    let before = peak_rss_kib();

    // Upload through the protected route.
    let stream = TcpStream::connect(gw.addr).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    let conn = tokio::spawn(conn);
    let request = http::Request::post("/api/upload")
        .header("host", "gw.test")
        .header("authorization", &auth)
        .body(upstream::Reply::generated(TOTAL))
        .unwrap();
    let response = sender.send_request(request).await.unwrap();
    assert_eq!(response.status(), 200);
    let body = response.into_body().collect().await.unwrap().to_bytes();
    let answer: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(answer["received"], TOTAL, "{answer}");
    let got = up.next_request().await;
    assert_eq!(got.target, "/api/upload");
    assert_eq!(got.body_len, TOTAL);
    assert_eq!(got.header("x-wx-openid"), Some("o-alice"));
    drop(sender);
    let _ = conn.await;

    // Download, read chunk by chunk.
    let mut response = client()
        .get(gw.url(&format!("/api/download/{TOTAL}")))
        .header("authorization", &auth)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let mut received = 0u64;
    while let Some(chunk) = response.chunk().await.unwrap() {
        assert!(chunk.iter().all(|&b| b == b'x'), "unexpected bytes");
        received += chunk.len() as u64;
    }
    assert_eq!(received, TOTAL);
    assert_eq!(
        up.next_request().await.target,
        format!("/api/download/{TOTAL}")
    );

    let after = peak_rss_kib();
    let growth = after.saturating_sub(before);
    assert!(
        growth < MAX_GROWTH_KIB,
        "peak RSS grew by {growth} KiB ({before} -> {after} KiB) moving 2 x {TOTAL} bytes"
    );
}

//! `GET /metrics` on the admin listener: every family the contract lists,
//! in strictly valid Prometheus text, moving with real traffic.

use std::time::Duration;

use serde_json::json;

use crate::common::fake_wechat::Fault;
use crate::common::login_flow::*;
use crate::common::prom::{scrape, Scrape};
use crate::common::*;

async fn metrics(gw: &TestGateway) -> Scrape {
    scrape(&gw.admin_url("/metrics")).await
}

const REQUESTS: &str = "wxgate_requests_total";

fn requests(m: &Scrape, route: &str, status: &str) -> f64 {
    m.value(REQUESTS, &[("route", route), ("status", status)])
}

fn count(m: &Scrape, histogram: &str, route: &str) -> f64 {
    m.value(&format!("{histogram}_count"), &[("route", route)])
}

#[tokio::test]
async fn every_family_is_declared_from_the_start() {
    let s = Setup::start().await;
    let m = metrics(&s.gw).await;
    for (family, kind) in [
        ("wxgate_requests_total", "counter"),
        ("wxgate_request_duration_seconds", "histogram"),
        ("wxgate_upstream_duration_seconds", "histogram"),
        ("wxgate_auth_failures_total", "counter"),
        ("wxgate_logins_total", "counter"),
        ("wxgate_wechat_errcodes_total", "counter"),
        ("wxgate_wechat_duration_seconds", "histogram"),
        ("wxgate_connections_open", "gauge"),
        ("wxgate_config_reloads_total", "counter"),
        ("wxgate_build_info", "gauge"),
    ] {
        assert_eq!(
            m.types.get(family).map(String::as_str),
            Some(kind),
            "{family}"
        );
    }
    assert_eq!(
        m.value(
            "wxgate_build_info",
            &[("version", env!("CARGO_PKG_VERSION"))]
        ),
        1.0
    );
    assert_eq!(
        m.value("wxgate_config_reloads_total", &[("result", "ok")]),
        0.0
    );
    assert_eq!(
        m.value("wxgate_config_reloads_total", &[("result", "error")]),
        0.0
    );
    assert_eq!(m.value("wxgate_wechat_duration_seconds_count", &[]), 0.0);
}

#[tokio::test]
async fn requests_are_counted_by_configured_route_and_status() {
    let s = Setup::start().await;
    let token = s.login_as("o-alice").await;
    for _ in 0..3 {
        assert_eq!(get(&s.gw, "/public/x", None).await.status, 200);
    }
    assert_eq!(get(&s.gw, "/public/status/503", None).await.status, 503);
    assert_eq!(get(&s.gw, "/public/status/299", None).await.status, 299);
    assert_eq!(get(&s.gw, "/api/secret-id-123", None).await.status, 401);
    assert_eq!(
        get(&s.gw, "/api/secret-id-123", Some(&token)).await.status,
        200
    );
    assert_eq!(get(&s.gw, "/nowhere/secret-id-456", None).await.status, 404);
    assert_eq!(get(&s.gw, "/auth/session", Some(&token)).await.status, 200);

    let m = metrics(&s.gw).await;
    assert_eq!(requests(&m, "/public", "200"), 3.0);
    assert_eq!(requests(&m, "/public", "503"), 1.0);
    assert_eq!(requests(&m, "/public", "299"), 1.0, "a rare status");
    assert_eq!(requests(&m, "/api", "401"), 1.0);
    assert_eq!(requests(&m, "/api", "200"), 1.0);
    assert_eq!(requests(&m, "none", "404"), 1.0);
    assert_eq!(requests(&m, "/auth/login", "200"), 1.0);
    assert_eq!(requests(&m, "/auth/session", "200"), 1.0);
    // Never a raw path: the label set is the configured one.
    let routes = m.label_values(REQUESTS, "route");
    for route in &routes {
        assert!(
            ["/public", "/api", "/auth/login", "/auth/session", "none"].contains(&route.as_str()),
            "unexpected route label {route:?} in {routes:?}"
        );
    }
    for h in [
        "wxgate_request_duration_seconds",
        "wxgate_upstream_duration_seconds",
    ] {
        for route in m.label_values(&format!("{h}_count"), "route") {
            assert!(!route.contains("secret-id"), "{h}: {route}");
        }
    }
    // Every answer is timed; only what reached the upstream is timed there.
    assert_eq!(count(&m, "wxgate_request_duration_seconds", "/public"), 5.0);
    assert_eq!(count(&m, "wxgate_request_duration_seconds", "/api"), 2.0);
    assert_eq!(
        count(&m, "wxgate_upstream_duration_seconds", "/public"),
        5.0
    );
    assert_eq!(count(&m, "wxgate_upstream_duration_seconds", "/api"), 1.0);
    assert_eq!(count(&m, "wxgate_upstream_duration_seconds", "none"), 0.0);
    assert_eq!(count(&m, "wxgate_request_duration_seconds", "none"), 1.0);
}

#[tokio::test]
async fn auth_failures_are_counted_by_reason() {
    let s = Setup::start().await;
    let token = s.login_as("o-bob").await;
    let rt = s.gw.gw.snapshot();
    let (expired, _) = rt
        .keys
        .mint(
            "o-bob",
            APPID,
            None,
            Duration::from_secs(60),
            wxgate::auth::token::now() - 86_400,
        )
        .unwrap();
    get(&s.gw, "/api/x", None)
        .await
        .assert_error(401, "missing_token");
    get(&s.gw, "/api/x", Some("not.a.token"))
        .await
        .assert_error(401, "invalid_token");
    get(&s.gw, "/auth/session", Some("garbage"))
        .await
        .assert_error(401, "invalid_token");
    get(&s.gw, "/api/x", Some(&expired))
        .await
        .assert_error(401, "token_expired");
    assert_eq!(logout(&s.gw, Some(&token)).await.status, 204);
    get(&s.gw, "/api/x", Some(&token))
        .await
        .assert_error(401, "token_revoked");

    let m = metrics(&s.gw).await;
    let reason = |r: &str| m.value("wxgate_auth_failures_total", &[("reason", r)]);
    assert_eq!(reason("missing_token"), 1.0);
    assert_eq!(reason("invalid_token"), 2.0);
    assert_eq!(reason("token_expired"), 1.0);
    assert_eq!(reason("token_revoked"), 1.0);
    assert_eq!(requests(&m, "/api", "401"), 4.0);
    assert_eq!(requests(&m, "/auth/logout", "204"), 1.0);
}

#[tokio::test]
async fn logins_and_wechat_errcodes_are_counted() {
    let s = Setup::start().await;
    s.login_as("o-carol").await;
    s.login_as("o-carol").await;
    s.login("never-minted-code-0123")
        .await
        .assert_error(401, "invalid_code");
    let code = s.fake.mint_code(APPID, "o-carol");
    s.fake.push_fault(Fault::Errcode(45011));
    s.login(&code).await.assert_error(429, "rate_limited");
    let code = s.fake.mint_code(APPID, "o-carol");
    s.fake.push_fault(Fault::Errcode(99999));
    s.login(&code).await.assert_error(502, "wechat_error");
    login(&s.gw, json!({ "code": "" }))
        .await
        .assert_error(400, "invalid_request");

    let m = metrics(&s.gw).await;
    let outcome = |o: &str| m.value("wxgate_logins_total", &[("outcome", o)]);
    assert_eq!(outcome("ok"), 2.0);
    assert_eq!(outcome("invalid_code"), 1.0);
    assert_eq!(outcome("rate_limited"), 1.0);
    assert_eq!(outcome("wechat_error"), 1.0);
    assert_eq!(outcome("invalid_request"), 1.0);
    let errcode = |c: &str| m.value("wxgate_wechat_errcodes_total", &[("errcode", c)]);
    assert_eq!(errcode("40029"), 1.0);
    assert_eq!(errcode("45011"), 1.0);
    assert_eq!(errcode("99999"), 1.0);
    // Every call that reached WeChat was timed; the empty code never went.
    assert_eq!(
        m.value("wxgate_wechat_duration_seconds_count", &[]),
        s.fake.calls() as f64
    );
    assert_eq!(s.fake.calls(), 5);
}

#[tokio::test]
async fn open_connections_go_up_and_down() {
    let up = crate::common::upstream::Upstream::start().await;
    let gw = gateway_with(&up, "").await;
    let open = |m: &Scrape| m.value("wxgate_connections_open", &[]);
    let before = open(&metrics(&gw).await);
    let mut conns = Vec::new();
    for _ in 0..3 {
        let mut stream = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
        // A full exchange proves the connection was accepted.
        let req = http_request("GET", "/public/x", &[("connection", "keep-alive")]);
        tokio::io::AsyncWriteExt::write_all(&mut stream, &req)
            .await
            .unwrap();
        let mut buf = [0u8; 1024];
        let n = tokio::io::AsyncReadExt::read(&mut stream, &mut buf)
            .await
            .unwrap();
        assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
        conns.push(stream);
    }
    assert_eq!(open(&metrics(&gw).await), before + 3.0);
    drop(conns);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let now = open(&metrics(&gw).await);
        if now == before {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "still {now} open, {before} before"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn a_request_its_client_abandons_is_counted_as_499() {
    use http_body_util::Empty;

    let up = crate::common::upstream::Upstream::start().await;
    let gw = gateway_with(&up, "").await;
    // Over HTTP/2 an abort is a stream reset that wxgate sees at once. (An
    // HTTP/1.1 client's FIN may be a half-close, which still gets its answer.)
    let (mut sender, _conn) = h2_connect(gw.addr).await;
    let req = http::Request::get("http://gw.test/public/hold")
        .body(Empty::<bytes::Bytes>::new())
        .unwrap();
    let pending = tokio::spawn(sender.send_request(req));
    up.next_request().await; // held in the upstream
    assert_eq!(requests(&metrics(&gw).await, "/public", "499"), 0.0);
    pending.abort(); // dropping the response future resets the stream
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let m = metrics(&gw).await;
        if requests(&m, "/public", "499") == 1.0 {
            assert_eq!(count(&m, "wxgate_request_duration_seconds", "/public"), 1.0);
            assert_eq!(
                count(&m, "wxgate_upstream_duration_seconds", "/public"),
                0.0
            );
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "never counted");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    up.release_hold();
}

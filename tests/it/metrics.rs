//! `GET /metrics` on the admin listener: every family the contract lists,
//! in strictly valid Prometheus text, moving with real traffic.

use std::time::Duration;

use serde_json::json;

use crate::common::fake_wechat::Fault;
use crate::common::login_flow::*;
use crate::common::prom::{scrape, Scrape};
use crate::common::tls::{tls_lines, TestCa};
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
        ("wxgate_store_entries", "gauge"),
        ("wxgate_token_cache_hits_total", "counter"),
        ("wxgate_token_cache_misses_total", "counter"),
    ] {
        assert_eq!(
            m.types.get(family).map(String::as_str),
            Some(kind),
            "{family}"
        );
    }
    // The commit is known when the build ran in a git checkout (build.rs).
    let mut build = vec![("version", env!("CARGO_PKG_VERSION"))];
    if let Some(commit) = option_env!("WXGATE_COMMIT") {
        assert!(
            commit.len() >= 7 && commit.chars().all(|c| c.is_ascii_hexdigit()),
            "{commit}"
        );
        build.push(("commit", commit));
    }
    assert_eq!(m.value("wxgate_build_info", &build), 1.0);
    assert_eq!(
        m.samples
            .iter()
            .filter(|s| s.name == "wxgate_build_info")
            .count(),
        1
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
    eventually(
        Duration::from_secs(10),
        "the closed connections counted",
        || async { (open(&metrics(&gw).await) == before).then_some(()) },
    )
    .await;
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
    let m = eventually(Duration::from_secs(10), "the 499 counted", || async {
        let m = metrics(&gw).await;
        (requests(&m, "/public", "499") == 1.0).then_some(m)
    })
    .await;
    assert_eq!(count(&m, "wxgate_request_duration_seconds", "/public"), 1.0);
    assert_eq!(
        count(&m, "wxgate_upstream_duration_seconds", "/public"),
        0.0
    );
    up.release_hold();
}

/// The standard process collector's series, read from /proc for this
/// process (the test gateway runs in the test's own process).
#[cfg(target_os = "linux")]
#[tokio::test]
async fn process_series_describe_this_process() {
    let up = crate::common::upstream::Upstream::start().await;
    let gw = gateway_with(&up, "").await;
    // Descriptors the scrape must see: far more than any concurrent test
    // closes in the meantime.
    let held: Vec<std::fs::File> = (0..300)
        .map(|_| std::fs::File::open("/proc/self/stat").unwrap())
        .collect();
    let m = metrics(&gw).await;
    for (family, kind) in [
        ("process_resident_memory_bytes", "gauge"),
        ("process_cpu_seconds_total", "counter"),
        ("process_open_fds", "gauge"),
        ("process_max_fds", "gauge"),
        ("process_start_time_seconds", "gauge"),
    ] {
        assert_eq!(
            m.types.get(family).map(String::as_str),
            Some(kind),
            "{family}"
        );
    }
    let fds = m.value("process_open_fds", &[]);
    assert!(fds >= held.len() as f64, "{fds} open descriptors");
    assert!(fds <= m.value("process_max_fds", &[]));
    drop(held);

    // Resident memory, as /proc/self/status tells it (in KiB).
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let kib: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS");
    let rss = m.value("process_resident_memory_bytes", &[]);
    let ours = kib * 1024.0;
    assert!(
        rss > ours / 2.0 && rss < ours * 2.0,
        "scraped {rss} bytes resident, /proc says {ours}"
    );
    // Started before the scrape, and not before this test binary's own
    // files were written.
    let started = m.value("process_start_time_seconds", &[]);
    let now = wxgate::auth::token::now() as f64;
    let built = std::fs::metadata(std::env::current_exe().unwrap())
        .unwrap()
        .modified()
        .unwrap()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as f64;
    assert!(
        started <= now && started >= built - 1.0,
        "start {started}, built {built}, now {now}"
    );
}

#[tokio::test]
async fn stored_sessions_and_revocations_are_gauged() {
    let s = Setup::start().await;
    let entries = |m: &Scrape, kind: &str| m.value("wxgate_store_entries", &[("kind", kind)]);
    let m = metrics(&s.gw).await;
    assert_eq!(entries(&m, "session"), 0.0);
    assert_eq!(entries(&m, "revocation"), 0.0);
    assert_eq!(entries(&m, "code"), 0.0);

    let alice = s.login_as("o-alice").await;
    s.login_as("o-bob").await;
    s.login_as("o-bob").await; // the same user: still one session
    let m = metrics(&s.gw).await;
    assert_eq!(entries(&m, "session"), 2.0);
    assert_eq!(entries(&m, "revocation"), 0.0);
    assert_eq!(entries(&m, "code"), 3.0, "each code's answer is kept");

    assert_eq!(logout(&s.gw, Some(&alice)).await.status, 204);
    let m = metrics(&s.gw).await;
    assert_eq!(entries(&m, "session"), 1.0, "a logout drops the session");
    assert_eq!(entries(&m, "revocation"), 1.0);
}

#[tokio::test]
async fn verified_token_cache_hits_and_misses_are_counted() {
    let s = Setup::start().await;
    let token = s.login_as("o-carol").await;
    let hits = |m: &Scrape| m.value("wxgate_token_cache_hits_total", &[]);
    let misses = |m: &Scrape| m.value("wxgate_token_cache_misses_total", &[]);
    let before = metrics(&s.gw).await;
    assert_eq!(hits(&before), 0.0);

    // The first use checks the signature; the next two find it cached.
    for _ in 0..3 {
        assert_eq!(get(&s.gw, "/api/x", Some(&token)).await.status, 200);
    }
    // A forgery is looked up, missed and refused; it is never cached.
    for _ in 0..2 {
        get(&s.gw, "/api/x", Some("not.a.token"))
            .await
            .assert_error(401, "invalid_token");
    }
    let after = metrics(&s.gw).await;
    assert_eq!(hits(&after) - hits(&before), 2.0);
    assert_eq!(misses(&after) - misses(&before), 3.0);

    // A reload starts a new cache (new keys) but keeps counting.
    s.gw.gw
        .install(s.gw.gw.snapshot().config.clone())
        .expect("the same config installs");
    assert_eq!(get(&s.gw, "/api/x", Some(&token)).await.status, 200);
    let reloaded = metrics(&s.gw).await;
    assert_eq!(hits(&reloaded), hits(&after));
    assert_eq!(misses(&reloaded), misses(&after) + 1.0);
}

#[tokio::test]
async fn the_certificate_expiry_is_the_leafs_not_after() {
    let ca = TestCa::new("wxgate test CA");
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = ca.issue_until(1, (2031, 7, 15)).write(dir.path());
    let text = set(
        &base_config(&nowhere(), &nowhere()),
        "[server]",
        &tls_lines(&cert, &key),
    );
    let path = dir.path().join("gateway.toml");
    std::fs::write(&path, text).unwrap();
    let gw = TestGateway::start_config(wxgate::Config::load(&path).unwrap()).await;
    let expiry = |m: &Scrape| {
        assert_eq!(
            m.types
                .get("wxgate_tls_certificate_expiry_timestamp_seconds")
                .map(String::as_str),
            Some("gauge")
        );
        m.value("wxgate_tls_certificate_expiry_timestamp_seconds", &[])
    };
    // 2031-07-15T00:00:00Z
    assert_eq!(expiry(&metrics(&gw).await), 1_941_840_000.0);

    // A renewed certificate, same files: the gauge follows the reload.
    ca.issue_until(2, (2032, 1, 2)).write(dir.path());
    wxgate::ops::reload::from_file(&gw.gw).unwrap();
    // 2032-01-02T00:00:00Z
    assert_eq!(expiry(&metrics(&gw).await), 1_956_614_400.0);

    // Without TLS there is no certificate, and no such family.
    let up = crate::common::upstream::Upstream::start().await;
    let plain = gateway_with(&up, "").await;
    assert!(!metrics(&plain)
        .await
        .types
        .contains_key("wxgate_tls_certificate_expiry_timestamp_seconds"));
}

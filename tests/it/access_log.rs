//! The access log and request ids: one line per request on target
//! `wxgate::access`, plain and JSON, read from the real binary's stderr; no
//! token, secret or session_key in any line of it; `X-Request-Id` made by
//! wxgate unless a trusted proxy sent a sane one.

use serde_json::{json, Value};

use crate::common::fake_wechat::FakeWeChat;
use crate::common::login_flow::*;
use crate::common::process::*;
use crate::common::upstream::Upstream;
use crate::common::*;

/// What the flow did: the request ids wxgate answered with, in order, and
/// the values that must appear in no log line.
struct Flow {
    ids: Vec<String>,
    secrets: Vec<(String, String)>,
    lines: Vec<String>,
}

/// Runs login, proxy, a bad token, session, logout, a revoked token and a
/// 404 through the binary with `[log] format = format`; returns its log.
async fn run_flow(format: &str) -> Flow {
    run_flow_with(format, "").await
}

/// [`run_flow`] with more `[log]` lines.
async fn run_flow_with(format: &str, log: &str) -> Flow {
    let fake = FakeWeChat::start().await;
    fake.add_app(APPID, APP_SECRET);
    let up = Upstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        "{}\n[log]\nformat = \"{format}\"\n{log}\n",
        base_config(&up.url(), &fake.base_url())
    );
    let path = write_config(dir.path(), &text);
    let mut proc = Proc::start_with_log(&path, "trace");
    let (listen, _) = proc.addresses();
    let http = client();
    let url = |p: &str| format!("http://{listen}{p}");
    let mut ids = Vec::new();
    let mut answer = |res: reqwest::Response, status: u16| {
        assert_eq!(res.status(), status);
        ids.push(res.headers()["x-request-id"].to_str().unwrap().to_owned());
        res
    };

    let code = fake.mint_code(APPID, "o-alice");
    let res = http
        .post(url("/auth/login"))
        .header("content-type", "application/json")
        .body(json!({ "code": code }).to_string())
        .send()
        .await
        .unwrap();
    let body: Value = serde_json::from_str(&answer(res, 200).text().await.unwrap()).unwrap();
    let token = body["access_token"].as_str().unwrap().to_owned();
    let mut tampered = token.clone();
    let last = tampered.pop().unwrap();
    tampered.push(if last == 'A' { 'B' } else { 'A' });
    let get = |p: &str, t: &str| http.get(url(p)).bearer_auth(t).send();
    answer(get("/api/me", &token).await.unwrap(), 200);
    let upstream_saw = up.last().unwrap();
    answer(get("/api/me", &tampered).await.unwrap(), 401);
    answer(get("/auth/session", &token).await.unwrap(), 200);
    let res = http
        .post(url("/auth/logout"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    answer(res, 204);
    answer(get("/api/me", &token).await.unwrap(), 401);
    answer(http.get(url("/nowhere")).send().await.unwrap(), 404);
    assert_eq!(
        upstream_saw.header("x-request-id"),
        Some(ids[1].as_str()),
        "the upstream got the id the client got"
    );

    let mut secrets = vec![
        ("the app secret".to_owned(), APP_SECRET.to_owned()),
        ("the signing key".to_owned(), JWT_SECRET.to_owned()),
        (
            "the session_key".to_owned(),
            fake.session_key(APPID, "o-alice").unwrap(),
        ),
    ];
    for (what, t) in [("token", &token), ("tampered token", &tampered)] {
        secrets.push((what.to_owned(), t.clone()));
        let signature = t.rsplit('.').next().unwrap().to_owned();
        secrets.push((format!("{what}'s signature"), signature));
    }
    Flow {
        ids,
        secrets,
        lines: proc.stop(),
    }
}

impl Flow {
    fn access_lines(&self) -> Vec<&String> {
        self.lines
            .iter()
            .filter(|l| l.contains("wxgate::access"))
            .collect()
    }

    /// wxgate's own plain lines write every text field one way, `key=value`
    /// (tracing's `%`), never `key="value"` (a bare `&str` field).
    fn assert_fields_written_one_way(&self) {
        let ours: Vec<&String> = self
            .lines
            .iter()
            .filter(|l| l.contains(" wxgate"))
            .collect();
        assert!(ours.len() > 8, "{ours:#?}");
        for line in ours {
            assert!(!has_quoted_field(line), "a quoted field in {line}");
        }
    }

    fn assert_no_secret(&self) {
        assert!(self.lines.len() > 20, "too little was logged");
        for line in &self.lines {
            assert!(!line.contains("secret="), "{line}");
            for (what, value) in &self.secrets {
                assert!(!line.contains(value.as_str()), "{what} in {line}");
            }
        }
    }
}

/// (route, status, openid) of each request of the flow, in order.
const EXPECTED: [(&str, u64, Option<&str>); 7] = [
    ("/auth/login", 200, None),
    ("/api", 200, Some("o-alice")),
    ("/api", 401, None),
    ("/auth/session", 200, None),
    ("/auth/logout", 204, None),
    ("/api", 401, None),
    ("none", 404, None),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_access_lines_carry_the_fields_and_no_secret() {
    let flow = run_flow("json").await;
    flow.assert_no_secret();
    let access = flow.access_lines();
    assert_eq!(access.len(), EXPECTED.len(), "{access:#?}");
    for (i, (line, (route, status, openid))) in access.iter().zip(EXPECTED).enumerate() {
        let v: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        assert_eq!(v["target"], "wxgate::access", "{line}");
        assert_eq!(v["level"], "INFO", "{line}");
        let f = &v["fields"];
        assert_eq!(f["route"], route, "{line}");
        assert_eq!(f["status"], status, "{line}");
        assert_eq!(f["request_id"], flow.ids[i].as_str(), "{line}");
        assert!(f["method"].is_string(), "{line}");
        assert!(f["duration_ms"].as_f64().unwrap() >= 0.0, "{line}");
        assert_eq!(f["openid"].as_str(), openid, "{line}");
        let forwarded = route == "/api" && status == 200;
        assert_eq!(f["upstream_ms"].is_f64(), forwarded, "{line}");
        if status >= 400 {
            assert!(f["error"].is_string(), "{line}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_access_lines_carry_the_fields_and_no_secret() {
    let flow = run_flow("plain").await;
    flow.assert_no_secret();
    let access = flow.access_lines();
    assert_eq!(access.len(), EXPECTED.len(), "{access:#?}");
    for (i, (line, (route, status, openid))) in access.iter().zip(EXPECTED).enumerate() {
        assert!(line.contains(" INFO "), "{line}");
        for field in [
            format!("route={route} "),
            format!("status={status} "),
            format!("request_id={}", flow.ids[i]),
        ] {
            assert!(line.contains(&field), "{field} not in {line}");
        }
        assert_eq!(line.contains("openid="), openid.is_some(), "{line}");
        if let Some(openid) = openid {
            assert!(line.contains(&format!("openid={openid} ")), "{line}");
        }
    }
    flow.assert_fields_written_one_way();
}

/// `log.openid = "off"` and `"hashed"`: the openid appears in no line of the
/// real binary's log (login, proxied request, logout, access lines); hashed,
/// the same user has the same 16 hex digits in every line.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openids_can_be_hashed_or_left_out_of_the_log() {
    for mode in ["off", "hashed"] {
        for format in ["plain", "json"] {
            let flow = run_flow_with(format, &format!("openid = \"{mode}\"")).await;
            flow.assert_no_secret();
            assert!(flow.access_lines().len() >= EXPECTED.len());
            for line in &flow.lines {
                assert!(!line.contains("o-alice"), "{mode} {format}: {line}");
            }
            let shown: Vec<String> = flow
                .lines
                .iter()
                .filter_map(|l| openid_field(l, format))
                .collect();
            if mode == "off" {
                assert!(shown.is_empty(), "{shown:?}");
                continue;
            }
            // Login, the proxied request's access line, logout at least.
            assert!(shown.len() >= 3, "{mode} {format}: {:#?}", flow.lines);
            assert!(
                shown.iter().all(|h| h == &shown[0]
                    && h.len() == 16
                    && h.bytes().all(|b| b.is_ascii_hexdigit())),
                "{shown:?}"
            );
        }
    }
}

/// The `openid` field of a log line, if it has one.
fn openid_field(line: &str, format: &str) -> Option<String> {
    if format == "json" {
        let v: Value = serde_json::from_str(line).ok()?;
        return v["fields"]["openid"].as_str().map(str::to_owned);
    }
    line.split_whitespace()
        .find_map(|w| w.strip_prefix("openid="))
        .map(str::to_owned)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_access_log_can_be_turned_off_or_filtered() {
    let up = Upstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    let base = base_config(&up.url(), &nowhere());
    for (extra, filter) in [
        ("\n[log]\naccess = false\n", "info"),
        ("", "info,wxgate::access=off"),
        ("", "info"),
    ] {
        let path = write_config(dir.path(), &format!("{base}{extra}"));
        let mut proc = Proc::start_with_log(&path, filter);
        let (listen, _) = proc.addresses();
        let res = client()
            .get(format!("http://{listen}/public/x"))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
        let lines = proc.stop();
        let logged = lines.iter().any(|l| l.contains("wxgate::access"));
        let expected = extra.is_empty() && filter == "info";
        assert_eq!(
            logged,
            expected,
            "{extra:?} {filter}:\n{}",
            lines.join("\n")
        );
        assert!(lines.iter().any(|l| l.contains("stopped")));
    }
}

fn is_generated_id(id: &str) -> bool {
    let (prefix, counter) = id.split_once('-').unwrap_or(("", ""));
    prefix.len() == 16
        && !counter.is_empty()
        && (prefix.chars().chain(counter.chars())).all(|c| c.is_ascii_hexdigit())
}

/// Sends `GET path` with `X-Request-Id: sent`; returns (what the client got,
/// what the upstream got).
async fn ids_for(gw: &TestGateway, up: &Upstream, sent: Option<&str>) -> (String, String) {
    let headers: Vec<(&str, &str)> = sent.map(|s| ("X-Request-Id", s)).into_iter().collect();
    let res = raw_request(gw.addr, "GET", "/public/x", &headers).await;
    assert_eq!(res.status, 200);
    let upstream = up.next_request().await;
    assert_eq!(upstream.header_all("x-request-id").len(), 1);
    (
        res.header("x-request-id").unwrap().to_owned(),
        upstream.header("x-request-id").unwrap().to_owned(),
    )
}

#[tokio::test]
async fn request_ids_from_untrusted_peers_are_replaced() {
    let up = Upstream::start().await;
    let gw = gateway_with(&up, "").await;
    let (a, a_up) = ids_for(&gw, &up, None).await;
    let (b, b_up) = ids_for(&gw, &up, Some("client-chosen-id")).await;
    assert_eq!(a, a_up);
    assert_eq!(b, b_up);
    assert_ne!(a, b);
    assert!(is_generated_id(&a), "{a}");
    assert!(is_generated_id(&b), "{b}");
    // wxgate's own answers carry one too.
    let res = raw_request(gw.addr, "GET", "/nowhere", &[]).await;
    assert_error(&res, 404, "not_found");
    assert!(is_generated_id(res.header("x-request-id").unwrap()));
}

#[tokio::test]
async fn a_trusted_proxy_keeps_a_sane_request_id() {
    let up = Upstream::start().await;
    let toml = set(
        &base_config(&up.url(), &nowhere()),
        "[server]",
        "trusted_proxies = [\"127.0.0.1/32\"]",
    );
    let gw = TestGateway::start(&toml).await;
    let kept = "3f2a9c1e-7b4d-4e0a-9f1c-2b3d4e5f6a7b";
    assert_eq!(
        ids_for(&gw, &up, Some(kept)).await,
        (kept.to_owned(), kept.to_owned())
    );
    let too_long = "a".repeat(129);
    for insane in ["has space", "quote\"d", too_long.as_str()] {
        let (client_got, upstream_got) = ids_for(&gw, &up, Some(insane)).await;
        assert_eq!(client_got, upstream_got);
        assert!(is_generated_id(&client_got), "{insane:?} -> {client_got}");
    }
}

//! Who may call the internal API: peers in `allow`, with the Bearer token
//! when one is set, checked before anything else (the path, the app);
//! nothing of it through the main listener; no listener without
//! `[internal]`.

use crate::common::internal_api::*;
use crate::common::*;

#[tokio::test]
async fn the_token_is_required_and_checked_first() {
    let t = Internal::start(&with_token()).await;
    let url = |path: &str| t.gw().internal_url(path);
    let app = |rest: &str| url(&format!("/v1/apps/{APPID}/{rest}"));
    let wrong_tokens = [
        None,
        Some("Bearer internal-token-do-not-leak-5a6b7c8"),
        Some("Bearer internal-token-do-not-leak-5a6b7c8d9"),
        Some("Bearer INTERNAL-TOKEN-DO-NOT-LEAK-5A6B7C8D"),
        Some("Basic aW50ZXJuYWw6dG9rZW4="),
        Some("internal-token-do-not-leak-5a6b7c8d"),
        Some("Bearer"),
    ];
    // Every endpoint, an unknown app and an unknown path: all 403 first.
    let targets = [
        ("GET", app("access_token")),
        ("POST", app("access_token/invalidate")),
        ("POST", app("wechat/wxa/msg_sec_check")),
        ("POST", app("users/o1/decrypt")),
        ("GET", app("users/o1/session")),
        ("POST", app("phone_number")),
        ("GET", url("/v1/apps/wxunknown/access_token")),
        ("GET", url("/nowhere")),
    ];
    for (method, target) in &targets {
        for auth in wrong_tokens {
            let mut request = t.http.request(method.parse().unwrap(), target);
            if let Some(auth) = auth {
                request = request.header("authorization", auth);
            }
            let reply = Reply::read(request.send().await.unwrap()).await;
            reply.assert_error(403, "forbidden");
        }
    }
    assert!(t.fake().api_calls("/cgi-bin/stable_token").is_empty());
    // Counted by the endpoint the path names (an unknown app's included).
    assert_eq!(
        t.requests("access_token", "403").await,
        2.0 * wrong_tokens.len() as f64
    );
    assert_eq!(t.requests("relay", "403").await, wrong_tokens.len() as f64);
    assert_eq!(t.requests("none", "403").await, wrong_tokens.len() as f64);

    // With the token: the app and the path are looked at.
    let get = |u: String| t.http.get(u).bearer_auth(INTERNAL_TOKEN).send();
    let reply = Reply::read(get(url("/v1/apps/wxunknown/access_token")).await.unwrap()).await;
    reply.assert_error(404, "unknown_app");
    let reply = Reply::read(get(url("/nowhere")).await.unwrap()).await;
    reply.assert_error(404, "not_found");
    let reply = Reply::read(get(app("phone_number")).await.unwrap()).await;
    reply.assert_error(405, "method_not_allowed");
    let reply = Reply::read(
        t.http
            .post(app("access_token"))
            .bearer_auth(INTERNAL_TOKEN)
            .send()
            .await
            .unwrap(),
    )
    .await;
    reply.assert_error(405, "method_not_allowed");
    // The scheme is case-insensitive (RFC 9110 §11.1), the token is not.
    let reply = t
        .http
        .get(app("access_token"))
        .header("authorization", format!("bearer {INTERNAL_TOKEN}"))
        .send()
        .await
        .unwrap();
    assert_eq!(reply.status(), 200);
}

#[tokio::test]
async fn peers_outside_allow_are_refused_even_with_the_token() {
    let t = Internal::start(&format!(
        "{}allow = [\"10.0.0.0/8\", \"::1/128\"]\n",
        with_token()
    ))
    .await;
    t.get("access_token").await.assert_error(403, "forbidden");
    t.get("users/o1/session")
        .await
        .assert_error(403, "forbidden");
    assert!(t.fake().api_calls("/cgi-bin/stable_token").is_empty());

    // Without a token, allow alone decides.
    let open = Internal::start("[internal]\n").await;
    let reply = Reply::read(
        open.http
            .get(open.url("access_token"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.text());
}

#[tokio::test]
async fn nothing_of_it_is_on_the_main_listener() {
    let t = Internal::start(&with_token()).await;
    for path in [
        format!("/v1/apps/{APPID}/access_token"),
        format!("/v1/apps/{APPID}/wechat/wxa/msg_sec_check"),
    ] {
        let res = t
            .http
            .get(t.gw().url(&path))
            .bearer_auth(INTERNAL_TOKEN)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 404, "{path}");
    }
    assert!(t.fake().api_calls("/cgi-bin/stable_token").is_empty());
}

#[tokio::test]
async fn it_is_off_unless_configured() {
    let up = upstream::Upstream::start().await;
    let config = wxgate::Config::parse_with_env(
        &base_config(&up.url(), &nowhere()),
        std::path::Path::new("t.toml"),
        Some(Default::default()),
    )
    .unwrap();
    assert!(config.internal.is_none());
    let listeners = wxgate::Listeners::bind(&config).await;
    // The base config listens on port 0: binding works, with no internal socket.
    assert!(listeners.unwrap().internal.is_none());
    let gw = TestGateway::start_config(config).await;
    assert!(gw.internal.is_none());
}

#[tokio::test]
async fn the_binary_binds_and_serves_it() {
    use crate::common::fake_wechat::FakeWeChat;
    use crate::common::process::*;

    let fake = FakeWeChat::start().await;
    fake.add_app(APPID, APP_SECRET);
    let up = upstream::Upstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        "{}\n[internal]\nlisten = \"127.0.0.1:0\"\ntoken_file = \"internal_token\"\n",
        base_config(&up.url(), &fake.base_url())
    );
    std::fs::write(
        dir.path().join("internal_token"),
        format!("{INTERNAL_TOKEN}\n"),
    )
    .unwrap();
    let path = write_config(dir.path(), &text);

    let check = std::process::Command::new(env!("CARGO_BIN_EXE_wxgate"))
        .args(["check", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    let shown = String::from_utf8_lossy(&check.stdout);
    assert!(check.status.success(), "{shown}");
    assert!(
        shown.contains(
            "internal API 127.0.0.1:0 (allow 127.0.0.0/8, ::1/128; Bearer token required)"
        ),
        "{shown}"
    );
    assert!(!shown.contains(INTERNAL_TOKEN));

    let mut proc = Proc::start(&path);
    let started = proc.wait_for("wxgate started");
    let internal = started
        .split_whitespace()
        .find_map(|w| w.strip_prefix("internal="))
        .unwrap_or_else(|| panic!("no internal= in {started}"))
        .to_owned();
    let url = format!("http://{internal}/v1/apps/{APPID}/access_token");
    let res = client()
        .get(&url)
        .bearer_auth(INTERNAL_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let body: serde_json::Value = serde_json::from_str(&res.text().await.unwrap()).unwrap();
    assert_eq!(
        body["access_token"].as_str(),
        fake.current_token(APPID).as_deref()
    );
    let res = client().get(&url).send().await.unwrap();
    assert_eq!(res.status(), 403);
    let log = proc.stop().join("\n");
    assert!(!log.contains(INTERNAL_TOKEN) && !log.contains(body["access_token"].as_str().unwrap()));
    // Its access lines write their fields the one way the others do.
    let access: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("listener=internal"))
        .collect();
    assert_eq!(access.len(), 2, "{log}");
    for line in access {
        assert!(!has_quoted_field(line), "a quoted field in {line}");
        assert!(line.contains("endpoint=access_token "), "{line}");
    }
}

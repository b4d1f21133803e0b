//! Secrets never leak: with every log line captured at TRACE (wxgate's own
//! events, its dependencies' `tracing` events and `log` records), logins run
//! through success and every failure path, and tokens are refused every way.
//! Neither the app secret, the signing key, a session_key nor a token may
//! appear in the log or in any answer (a token only in its own login answer).

#[path = "it/common/mod.rs"]
mod common;

use std::io;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use serde_json::json;

use common::fake_wechat::{FakeWeChat, Fault};
use common::login_flow::*;
use common::upstream::Upstream;
use common::*;

/// Every byte the global subscriber writes.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Captured {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

/// Installs the TRACE subscriber once for this test binary.
fn log() -> &'static Captured {
    static LOG: OnceLock<Captured> = OnceLock::new();
    LOG.get_or_init(|| {
        let captured = Captured::default();
        let writer = captured.clone();
        tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .try_init()
            .expect("the only global subscriber in this binary");
        captured
    })
}

/// What a test saw: the answers it got and the secrets it must not find.
#[derive(Default)]
struct Seen {
    /// (what, answer, the token this answer may carry).
    answers: Vec<(String, Answer, Option<String>)>,
    secrets: Vec<(String, String)>,
}

impl Seen {
    fn answer(&mut self, what: impl Into<String>, answer: Answer) -> Answer {
        self.answers.push((what.into(), answer.clone(), None));
        answer
    }

    /// A successful login: its token becomes a secret everywhere else.
    fn login_ok(&mut self, what: impl Into<String>, answer: Answer) -> String {
        let what = what.into();
        assert_eq!(answer.status, 200, "{what}: {}", answer.body);
        let token = answer.token();
        self.token(&what, &token);
        self.answers.push((what, answer, Some(token.clone())));
        token
    }

    fn token(&mut self, what: &str, token: &str) {
        self.secret(format!("token of {what}"), token);
        // The signature alone is enough to matter.
        let signature = token.rsplit('.').next().unwrap();
        self.secret(format!("signature of {what}"), signature);
    }

    fn secret(&mut self, what: impl Into<String>, value: &str) {
        assert!(value.len() >= 16, "too short to search for: {value:?}");
        self.secrets.push((what.into(), value.to_owned()));
    }

    fn session_keys(&mut self, fake: &FakeWeChat, appid: &str, openids: &[&str]) {
        for openid in openids {
            if let Some(key) = fake.session_key(appid, openid) {
                self.secret(format!("session_key of {openid}"), &key);
            }
        }
    }

    /// Checks every answer and the whole log so far.
    fn check(&self) {
        let log = log().text();
        assert!(
            log.contains("wxgate::login"),
            "the log captured nothing from wxgate: {log:?}"
        );
        assert!(!log.contains("secret="), "secret= in the log:\n{log}");
        for (what, value) in &self.secrets {
            assert!(!log.contains(value.as_str()), "{what} in the log:\n{log}");
        }
        for (label, answer, own_token) in &self.answers {
            let everything = answer.everything();
            for (what, value) in &self.secrets {
                let own = own_token
                    .as_deref()
                    .is_some_and(|t| t == value || t.ends_with(&format!(".{value}")));
                if own {
                    // Its own token, once, in the body and nowhere else.
                    assert_eq!(everything.matches(value.as_str()).count(), 1, "{label}");
                    continue;
                }
                assert!(
                    !everything.contains(value.as_str()),
                    "{what} in the answer to {label}:\n{everything}"
                );
            }
            assert!(!everything.contains("session_key"), "{label}: {everything}");
        }
    }
}

fn base_secrets(seen: &mut Seen) {
    seen.secret("the app secret", APP_SECRET);
    seen.secret("the signing key", JWT_SECRET);
}

#[tokio::test]
async fn logins_leak_nothing_on_any_path() {
    log();
    let mut seen = Seen::default();
    base_secrets(&mut seen);

    let s = Setup::start().await;
    s.fake.set_unionid(APPID, "o-alice", Some("u-alice"));
    let code = s.fake.mint_code(APPID, "o-alice");
    let answer = s.login(&code).await;
    let token = seen.login_ok("login ok", answer);
    let again = s.login(&code).await;
    seen.login_ok("the same code again", again);
    seen.answer("api", get(&s.gw, "/api/me", Some(&token)).await);
    seen.answer("session", get(&s.gw, "/auth/session", Some(&token)).await);

    s.fake.rotate_session_key(APPID, "o-alice");
    let answer = s.login(&s.fake.mint_code(APPID, "o-alice")).await;
    seen.login_ok("login after rotation", answer);

    let faults = [
        ("-1", Fault::Errcode(-1)),
        ("45011", Fault::Errcode(45011)),
        ("99999", Fault::Errcode(99999)),
        ("string 40029", Fault::ErrcodeAsString(40029)),
        ("reset", Fault::Reset),
        ("malformed JSON", Fault::MalformedJson),
        ("HTML 502", Fault::Http502Html),
        ("redirect", Fault::Redirect302),
        ("consumed then dropped", Fault::ConsumeThenDrop),
        ("empty session_key", Fault::EmptySessionKey),
        (
            "raw CRLF openid",
            Fault::Raw(r#"{"session_key":"c2Vzc2lvbmtleWxlYWsxMg==","openid":"o\r\nx"}"#.into()),
        ),
    ];
    seen.secret("the raw answer's session_key", "c2Vzc2lvbmtleWxlYWsxMg==");
    for (what, fault) in faults {
        let code = s.fake.mint_code(APPID, "o-bob");
        s.fake.push_fault(fault);
        let answer = s.login(&code).await;
        assert!(answer.status >= 400, "{what}: {}", answer.body);
        seen.answer(what, answer);
        // The retry of a code whose exchange failed.
        let retry = s.login(&code).await;
        if retry.status == 200 {
            seen.login_ok(format!("retry after {what}"), retry);
        } else {
            seen.answer(format!("retry after {what}"), retry);
        }
    }
    seen.answer("40029", s.login("never-minted-code-0123").await);
    s.fake.block_user(APPID, "o-mallory");
    let code = s.fake.mint_code(APPID, "o-mallory");
    seen.answer("40226", s.login(&code).await);
    seen.answer(
        "bad body",
        login(&s.gw, json!({ "code": "has space" })).await,
    );
    seen.session_keys(&s.fake, APPID, &["o-alice", "o-bob", "o-mallory"]);

    // WeChat too slow.
    let slow = Setup::with(|c| c.edit("timeout = \"2s\"", "timeout = \"300ms\"")).await;
    let code = slow.fake.mint_code(APPID, "o-carol");
    slow.fake.push_fault(Fault::Delay(Duration::from_secs(3)));
    let answer = slow.login(&code).await;
    answer.assert_error(504, "wechat_timeout");
    seen.answer("timeout", answer);
    seen.session_keys(&slow.fake, APPID, &["o-carol"]);

    // The configured secret is wrong (40125), and the appid unknown (40013).
    let fake = FakeWeChat::start().await;
    fake.add_app(APPID, "what-wechat-really-has-0000000000");
    let up = Upstream::start().await;
    let wrong = TestGateway::start(&base_config(&up.url(), &fake.base_url())).await;
    let answer = login(&wrong, json!({ "code": fake.mint_code(APPID, "o-dave") })).await;
    answer.assert_error(500, "gateway_misconfigured");
    seen.answer("40125", answer);
    let unknown_app = FakeWeChat::start().await;
    let unknown = TestGateway::start(&base_config(&up.url(), &unknown_app.base_url())).await;
    let code = unknown_app.mint_code(APPID, "o-dave");
    let answer = login(&unknown, json!({ "code": code })).await;
    answer.assert_error(500, "gateway_misconfigured");
    seen.answer("40013", answer);

    // WeChat unreachable.
    let closed = closed_port();
    let down = TestGateway::start(&base_config(&up.url(), &format!("http://{closed}"))).await;
    let answer = login(&down, json!({ "code": "some-code-0123456789" })).await;
    answer.assert_error(503, "wechat_unavailable");
    seen.answer("unreachable", answer);

    seen.check();
}

#[tokio::test]
async fn token_refusals_leak_nothing() {
    log();
    let mut seen = Seen::default();
    base_secrets(&mut seen);
    let s = Setup::start().await;
    let code = s.fake.mint_code(APPID, "o-erin");
    let token = seen.login_ok("login", s.login(&code).await);
    let second = seen.login_ok(
        "second login",
        s.login(&s.fake.mint_code(APPID, "o-erin")).await,
    );

    // Tampered: a flipped signature character, and a claim changed.
    let mut tampered = token.clone();
    let last = tampered.pop().unwrap();
    tampered.push(if last == 'A' { 'B' } else { 'A' });
    seen.token("the tampered token", &tampered);
    let mut parts: Vec<String> = token.split('.').map(str::to_owned).collect();
    parts[1] = parts[1].replacen('e', "f", 1);
    let forged = parts.join(".");
    seen.token("the forged token", &forged);
    // Expired long ago, signed with the right key.
    let rt = s.gw.gw.snapshot();
    let (expired, _) = rt
        .keys
        .mint(
            "o-erin",
            APPID,
            None,
            Duration::from_secs(60),
            wxgate::auth::token::now() - 86_400,
        )
        .unwrap();
    seen.token("the expired token", &expired);

    for (what, presented) in [
        ("tampered", &tampered),
        ("forged", &forged),
        ("expired", &expired),
    ] {
        for path in ["/api/x", "/auth/session"] {
            let answer = get(&s.gw, path, Some(presented)).await;
            assert_eq!(answer.status, 401, "{what} on {path}: {}", answer.body);
            seen.answer(format!("{what} on {path}"), answer);
        }
        seen.answer(
            format!("logout {what}"),
            logout(&s.gw, Some(presented)).await,
        );
    }
    seen.answer("missing", get(&s.gw, "/api/x", None).await);

    // Revoked.
    seen.answer("logout", logout(&s.gw, Some(&token)).await);
    for path in ["/api/x", "/auth/session"] {
        let answer = get(&s.gw, path, Some(&token)).await;
        answer.assert_error(401, "token_revoked");
        seen.answer(format!("revoked on {path}"), answer);
    }
    seen.answer("second token", get(&s.gw, "/api/x", Some(&second)).await);
    seen.session_keys(&s.fake, APPID, &["o-erin"]);
    seen.check();
}

/// The internal API through success and failure on every endpoint: neither
/// the app secret, an access_token, a session_key (nor the checksession
/// signature made from it), the internal token nor a token a caller sent
/// appears in the log; access_tokens appear only in the answers of the
/// access_token endpoints, secrets and session_keys in no answer.
#[tokio::test]
async fn the_internal_api_leaks_nothing() {
    use common::fake_wechat::internal::{checksession_signature, ApiFault};
    use common::internal_api::*;
    use reqwest::Method;

    log();
    let mut seen = Seen::default();
    base_secrets(&mut seen);
    seen.secret("the internal token", INTERNAL_TOKEN);
    let caller_token = "a-callers-own-access-token-0123456789";
    seen.secret("a caller's access_token", caller_token);
    let wrong = "wrong-internal-token-0123456789abcdef";
    seen.secret("a wrong internal token", wrong);

    let t = Internal::with(&with_token(), |c| {
        c.edit("timeout = \"2s\"", "timeout = \"500ms\"")
    })
    .await;
    // (what, reply, may it carry an access_token?)
    let mut replies: Vec<(String, Reply, bool)> = Vec::new();
    let relay = |path: &str, body: &'static str| {
        t.request(
            Method::POST,
            &format!("wechat/{path}?access_token={caller_token}"),
        )
        .header("content-type", "application/json")
        .body(body)
        .send()
    };
    let t1 = t.get("access_token").await;
    let held = t1.token();
    replies.push(("access_token".into(), t1, true));
    let reply = Reply::read(
        relay("wxa/msg_sec_check", r#"{"content":"hi"}"#)
            .await
            .unwrap(),
    )
    .await;
    replies.push(("relay".into(), reply, false));
    t.fake().rotate_token(APPID);
    let reply = Reply::read(relay("wxa/getwxacodeunlimit", "{}").await.unwrap()).await;
    replies.push(("relay with a retry".into(), reply, false));
    t.fake().push_api_fault(ApiFault::Errcode(40001));
    t.fake().push_api_fault(ApiFault::Errcode(40001));
    let reply = Reply::read(relay("wxa/msg_sec_check", "{}").await.unwrap()).await;
    replies.push(("relay refused twice".into(), reply, false));
    let reply = t
        .post_json(
            "access_token/invalidate",
            serde_json::json!({ "access_token": held }),
        )
        .await;
    replies.push(("invalidate".into(), reply, true));
    for (what, fault) in [
        ("relay timeout", ApiFault::Delay(Duration::from_secs(3))),
        ("relay reset", ApiFault::Reset),
        ("relay HTML 502", ApiFault::Http502Html),
    ] {
        t.fake().push_api_fault(fault);
        let reply = Reply::read(relay("wxa/msg_sec_check", "{}").await.unwrap()).await;
        replies.push((what.into(), reply, false));
    }
    let reply = Reply::read(relay("sns/jscode2session", "{}").await.unwrap()).await;
    replies.push(("forbidden path".into(), reply, false));

    // What needs the session_key.
    t.setup.login_as("o-alice").await;
    let first_key = t.fake().session_key(APPID, "o-alice").unwrap();
    seen.secret("o-alice's first session_key", &first_key);
    seen.secret(
        "its checksession signature",
        &checksession_signature(&first_key),
    );
    let now = wxgate::auth::token::now();
    let data = serde_json::json!({"stepInfoList": []});
    let (d, iv) = t
        .fake()
        .encrypted_data(APPID, "o-alice", data.clone(), APPID, now);
    let reply = t
        .post_json(
            "users/o-alice/decrypt",
            serde_json::json!({"encryptedData": d, "iv": iv}),
        )
        .await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    replies.push(("decrypt".into(), reply, false));
    replies.push((
        "session".into(),
        t.get("users/o-alice/session").await,
        false,
    ));
    t.fake().rotate_session_key(APPID, "o-alice");
    let (d, iv) = t.fake().encrypted_data(APPID, "o-alice", data, APPID, now);
    let reply = t
        .post_json(
            "users/o-alice/decrypt",
            serde_json::json!({"encryptedData": d, "iv": iv}),
        )
        .await;
    reply.assert_error(422, "decrypt_failed");
    replies.push(("decrypt after rotation".into(), reply, false));
    replies.push((
        "stale session".into(),
        t.get("users/o-alice/session").await,
        false,
    ));
    seen.session_keys(t.fake(), APPID, &["o-alice"]);
    let code = t.fake().mint_phone_code(APPID, "86", "13800138000");
    for what in ["phone", "phone reused"] {
        let reply = t
            .post_json("phone_number", serde_json::json!({ "code": code }))
            .await;
        replies.push((what.into(), reply, false));
    }
    let reply = Reply::read(
        t.http
            .get(t.url("access_token"))
            .bearer_auth(wrong)
            .send()
            .await
            .unwrap(),
    )
    .await;
    reply.assert_error(403, "forbidden");
    replies.push(("wrong internal token".into(), reply, false));
    let reply = t.get("access_token").await;
    let held = reply.token();
    replies.push(("access_token again".into(), reply, true));
    t.fake().push_token_fault(ApiFault::Errcode(40125));
    let reply = t
        .post_json(
            "access_token/invalidate",
            serde_json::json!({ "access_token": held }),
        )
        .await;
    reply.assert_error(500, "gateway_misconfigured");
    replies.push(("stable_token refused".into(), reply, false));

    // Every access_token WeChat issued, as the calls carried them.
    let mut tokens = std::collections::BTreeSet::new();
    for path in [
        "/wxa/msg_sec_check",
        "/wxa/getwxacodeunlimit",
        "/wxa/checksession",
        "/wxa/business/getuserphonenumber",
    ] {
        for call in t.fake().api_calls(path) {
            tokens.extend(call.access_token.filter(|t| t != caller_token));
        }
    }
    tokens.extend(t.fake().current_token(APPID));
    assert!(tokens.len() >= 3, "{tokens:?}");

    let log = log().text();
    assert!(
        log.contains("wxgate::access") && log.contains("listener=internal"),
        "no access-log line of the internal API"
    );
    for token in &tokens {
        assert!(
            !log.contains(token.as_str()),
            "an access_token in the log:\n{log}"
        );
    }
    for (what, reply, may_carry_token) in &replies {
        let text = format!(
            "{:?} {:?} {}",
            reply.content_type,
            reply.cache_control,
            reply.text()
        );
        for token in &tokens {
            if !may_carry_token {
                assert!(
                    !text.contains(token.as_str()),
                    "an access_token in {what}: {text}"
                );
            }
        }
        for (secret, value) in &seen.secrets {
            assert!(!text.contains(value.as_str()), "{secret} in {what}: {text}");
        }
    }
    seen.check();
}

/// The Redis store's password and encryption key, and what it stores,
/// stay out of the log (redis-rs's own events included) and the answers,
/// through logins, a logout, Redis going away and coming back.
#[tokio::test]
#[ignore = "needs redis-server"]
async fn the_redis_store_leaks_nothing() {
    use common::redis_server::RedisServer;
    const PASSWORD: &str = "redis-password-do-not-leak-42";
    const STORE_KEY: &str = "c3RvcmUta2V5LWRvLW5vdC1sZWFrLTAxMjM0NTY3ODk=";
    log();
    let mut seen = Seen::default();
    base_secrets(&mut seen);
    seen.secret("the Redis password", PASSWORD);
    seen.secret("the store encryption key", STORE_KEY);
    let mut redis = RedisServer::start_with(&["--requirepass", PASSWORD]);
    let store = format!(
        "\n[store]\nbackend = \"redis\"\nurl = \"{}\"\npassword = \"{PASSWORD}\"\n\
         timeout = \"300ms\"\nencryption_key = \"{STORE_KEY}\"\n",
        redis.url()
    );
    let s = Setup::with(|c| format!("{c}{store}")).await;
    let code = s.fake.mint_code(APPID, "o-ruth");
    let answer = eventually(Duration::from_secs(10), "a login with Redis up", || async {
        let answer = s.login(&code).await;
        (answer.status == 200).then_some(answer)
    })
    .await;
    let token = seen.login_ok("login with the Redis store", answer);
    seen.session_keys(&s.fake, APPID, &["o-ruth"]);
    // The retried code's answer is that same token.
    let retry = s.login(&code).await;
    assert_eq!(retry.token(), token);
    seen.answers
        .push(("retry".into(), retry, Some(token.clone())));
    redis.kill();
    let answer = logout(&s.gw, Some(&token)).await;
    answer.assert_error(503, "store_unavailable");
    seen.answer("logout, Redis down", answer);
    redis.restart();
    let answer = eventually(
        Duration::from_secs(10),
        "a logout once Redis is back",
        || async {
            let answer = logout(&s.gw, Some(&token)).await;
            (answer.status == 204).then_some(answer)
        },
    )
    .await;
    seen.answer("logout", answer);
    assert!(
        log().text().contains("redis"),
        "redis-rs's events were not captured"
    );
    seen.check();
}

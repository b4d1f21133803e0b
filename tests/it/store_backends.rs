//! The behaviour both store backends owe one process, run against each:
//! the memory store, and the Redis store on a real redis-server.

use std::time::Duration;

use serde_json::json;

use crate::common::fake_wechat::Fault;
use crate::common::login_flow::*;
use crate::common::redis_server::RedisServer;
use crate::common::*;

/// `[store]` for a Redis store at `url`.
pub fn redis_store(url: &str, extra: &str) -> String {
    format!(
        "\n[store]\nbackend = \"redis\"\nurl = \"{url}\"\nkey_prefix = \"{PREFIX}\"\n\
         timeout = \"300ms\"\nencryption_key = \"{STORE_KEY_B64}\"\n{extra}\n"
    )
}

/// The test's `encryption_key`: base64 of [`STORE_KEY`].
pub const STORE_KEY: &[u8; 32] = b"store-key-do-not-leak-0123456789";
pub const STORE_KEY_B64: &str = "c3RvcmUta2V5LWRvLW5vdC1sZWFrLTAxMjM0NTY3ODk=";
pub const PREFIX: &str = "wxgt:";

pub struct Backend {
    pub redis: Option<RedisServer>,
}

impl Backend {
    pub fn memory() -> Backend {
        Backend { redis: None }
    }

    pub fn redis() -> Backend {
        Backend {
            redis: Some(RedisServer::start()),
        }
    }

    /// The config with this backend's `[store]` (and `extra` keys in it).
    pub fn config(&self, config: String, extra: &str) -> String {
        match &self.redis {
            None if extra.is_empty() => config,
            None => format!("{config}\n[store]\n{extra}\n"),
            Some(redis) => format!("{config}{}", redis_store(&redis.url(), extra)),
        }
    }

    pub async fn setup(&self, edit: impl FnOnce(String) -> String, store: &str) -> Setup {
        Setup::with(|c| self.config(edit(c), store)).await
    }
}

macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test]
            async fn memory() {
                super::$name(super::Backend::memory()).await
            }
            #[tokio::test]
            #[ignore = "needs redis-server"]
            async fn redis() {
                super::$name(super::Backend::redis()).await
            }
        }
    )*};
}

on_both_backends!(
    one_code_sent_ten_times_at_once_is_one_wechat_call,
    a_definitive_refusal_is_remembered,
    logout_revokes_the_token_and_drops_the_session_key,
    ipv6_clients_share_the_rate_limit_of_their_64,
    a_full_revocation_list_refuses_logins_and_forgets_nothing,
);

async fn one_code_sent_ten_times_at_once_is_one_wechat_call(backend: Backend) {
    let s = backend.setup(|c| c, "").await;
    let code = s.fake.mint_code(APPID, "o-alice");
    // The first exchange is still in flight when the others arrive.
    s.fake.push_fault(Fault::Delay(Duration::from_millis(300)));
    let answers =
        futures_util::future::join_all((0..10).map(|_| login(&s.gw, json!({ "code": code }))))
            .await;
    let token = Answer::one_token(&answers);
    assert_eq!(s.fake.calls_for_code(&code), 1);
    // Within the code's life, a retry gets the same answer, still one call.
    assert_eq!(s.login(&code).await.token(), token);
    assert_eq!(s.fake.calls_for_code(&code), 1);
}

async fn a_definitive_refusal_is_remembered(backend: Backend) {
    let s = backend.setup(|c| c, "").await;
    s.fake.block_user(APPID, "o-mallory");
    let code = s.fake.mint_code(APPID, "o-mallory");
    s.login(&code).await.assert_error(403, "user_blocked");
    s.login(&code).await.assert_error(403, "user_blocked");
    assert_eq!(s.fake.calls_for_code(&code), 1);
    // A transient failure is not: the next attempt calls WeChat again.
    let code = s.fake.mint_code(APPID, "o-bob");
    s.fake.push_fault(Fault::Errcode(-1));
    s.login(&code).await.assert_error(503, "wechat_unavailable");
    assert_eq!(s.login(&code).await.status, 200);
    assert_eq!(s.fake.calls_for_code(&code), 2);
}

async fn logout_revokes_the_token_and_drops_the_session_key(backend: Backend) {
    let s = backend.setup(|c| c, "").await;
    s.fake.set_unionid(APPID, "o-alice", Some("u-alice"));
    let code = s.fake.mint_code(APPID, "o-alice");
    let token = s.login(&code).await.token();
    let store = s.gw.gw.store();
    let stored = store
        .session(APPID, "o-alice")
        .await
        .unwrap()
        .expect("stored");
    assert_eq!(
        Some(stored.session_key.expose()),
        s.fake.session_key(APPID, "o-alice").as_deref()
    );
    assert_eq!(stored.unionid.as_deref(), Some("u-alice"));
    let session = get(&s.gw, "/auth/session", Some(&token)).await;
    assert_eq!(session.json()["unionid"], "u-alice");
    assert_eq!(get(&s.gw, "/api/x", Some(&token)).await.status, 200);

    assert_eq!(logout(&s.gw, Some(&token)).await.status, 204);
    get(&s.gw, "/api/x", Some(&token))
        .await
        .assert_error(401, "token_revoked");
    get(&s.gw, "/auth/session", Some(&token))
        .await
        .assert_error(401, "token_revoked");
    assert!(store.session(APPID, "o-alice").await.unwrap().is_none());
    // The code's remembered answer is that revoked token: not handed out.
    s.login(&code).await.assert_error(401, "code_used");
}

async fn ipv6_clients_share_the_rate_limit_of_their_64(backend: Backend) {
    let s = backend
        .setup(
            |c| {
                let c = rate_limit(&c, "3/min");
                set(&c, "[server]", "trusted_proxies = [\"127.0.0.1\"]")
            },
            "",
        )
        .await;
    let mut admitted = 0;
    for i in 1..=12 {
        let res = client()
            .post(s.gw.url("/auth/login"))
            .header("content-type", "application/json")
            .header("x-forwarded-for", format!("2001:db8:5:6::{i:x}"))
            .body(json!({ "code": format!("bad code {i}") }).to_string())
            .send()
            .await
            .unwrap();
        match res.status().as_u16() {
            429 => assert!(res.headers().contains_key("retry-after")),
            // Admitted, then refused for the code's shape.
            400 => admitted += 1,
            other => panic!("unexpected {other}"),
        }
    }
    assert_eq!(admitted, 3, "12 addresses of one /64 got their own budgets");
    // Another /64, and an IPv4 client, have budgets of their own.
    for client_ip in ["2001:db8:5:7::1", "198.51.100.7"] {
        let res = client()
            .post(s.gw.url("/auth/login"))
            .header("content-type", "application/json")
            .header("x-forwarded-for", client_ip)
            .body(r#"{"code": "bad code"}"#)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 400, "{client_ip}");
    }
}

async fn a_full_revocation_list_refuses_logins_and_forgets_nothing(backend: Backend) {
    const CAPACITY: usize = 20;
    let s = backend
        .setup(|c| c, &format!("capacity = {CAPACITY}"))
        .await;
    let mut revoked = Vec::new();
    for i in 0..CAPACITY {
        let token = s.login_as(&format!("o-{i}")).await;
        assert_eq!(logout(&s.gw, Some(&token)).await.status, 204);
        revoked.push(token);
    }
    // Full: a token minted now could not be revoked, so none is minted...
    let code = s.fake.mint_code(APPID, "o-late");
    s.login(&code).await.assert_error(503, "store_unavailable");
    assert_eq!(s.fake.calls_for_code(&code), 0, "refused before WeChat");
    // ...a logout that cannot be kept is not answered 204...
    let other = token(&s.gw.gw, "o-other");
    logout(&s.gw, Some(&other))
        .await
        .assert_error(503, "store_unavailable");
    // ...and every revocation that was answered 204 still holds.
    for token in &revoked {
        get(&s.gw, "/api/x", Some(token))
            .await
            .assert_error(401, "token_revoked");
    }
}

//! Several gateways sharing one Redis behave as one gateway: one WeChat
//! call per code, a logout seen everywhere within a second, one rate-limit
//! budget; and what happens while Redis is down, restarted or flushed.
//! Every test runs a real redis-server (`needs redis-server`).

use std::time::{Duration, Instant};

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use serde_json::json;

use crate::common::fake_wechat::{FakeWeChat, Fault};
use crate::common::login_flow::*;
use crate::common::process::{write_config, Proc};
use crate::common::prom::scrape;
use crate::common::redis_server::RedisServer;
use crate::common::upstream::Upstream;
use crate::common::*;
use crate::store_backends::{redis_store, PREFIX, STORE_KEY, STORE_KEY_B64};

struct Cluster {
    fake: FakeWeChat,
    /// Kept alive: the routes' upstream.
    _up: Upstream,
    redis: RedisServer,
    /// The config every replica runs.
    config: String,
    replicas: Vec<TestGateway>,
}

impl Cluster {
    /// `n` replicas of the base config (through `edit`) with the Redis
    /// store (and `store` keys), each connected.
    async fn start(n: usize, edit: impl Fn(String) -> String, store: &str) -> Cluster {
        let redis = RedisServer::start();
        let fake = FakeWeChat::start().await;
        fake.add_app(APPID, APP_SECRET);
        let up = Upstream::start().await;
        let config = format!(
            "{}{}",
            edit(base_config(&up.url(), &fake.base_url())),
            redis_store(&redis.url(), store)
        );
        let mut replicas = Vec::new();
        for _ in 0..n {
            let gw = TestGateway::start(&config).await;
            wait_store_up(&gw, 1.0).await;
            replicas.push(gw);
        }
        Cluster {
            fake,
            _up: up,
            redis,
            config,
            replicas,
        }
    }

    async fn login_on(&self, i: usize, openid: &str) -> String {
        let code = self.fake.mint_code(APPID, openid);
        let answer = login(&self.replicas[i], json!({ "code": code })).await;
        assert_eq!(answer.status, 200, "{}", answer.body);
        answer.token()
    }
}

async fn store_up(gw: &TestGateway) -> f64 {
    scrape(&gw.admin_url("/metrics"))
        .await
        .value("wxgate_store_up", &[])
}

/// Polls `/metrics` until `wxgate_store_up` is `want` (10 s at most).
async fn wait_store_up(gw: &TestGateway, want: f64) {
    let what = format!("wxgate_store_up = {want}");
    eventually(Duration::from_secs(10), &what, || async {
        (store_up(gw).await == want).then_some(())
    })
    .await;
}

/// How long `check` took to hold (see [`eventually`]).
async fn within<F, Fut>(bound: Duration, what: &str, mut check: F) -> Duration
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    eventually(bound, what, || {
        let holds = check();
        async move { holds.await.then_some(()) }
    })
    .await;
    start.elapsed()
}

#[tokio::test]
#[ignore = "needs redis-server"]
async fn the_same_code_on_two_replicas_at_once_is_one_wechat_call_and_one_token() {
    let c = Cluster::start(2, |c| c, "").await;
    let code = c.fake.mint_code(APPID, "o-alice");
    // The first exchange is still in flight when the others arrive.
    c.fake.push_fault(Fault::Delay(Duration::from_millis(500)));
    let body = json!({ "code": code });
    let answers =
        futures_util::future::join_all((0..6).map(|i| login(&c.replicas[i % 2], body.clone())))
            .await;
    let token = Answer::one_token(&answers);
    assert_eq!(c.fake.calls_for_code(&code), 1);
    // Later, on either replica: the same answer, no call.
    for gw in &c.replicas {
        assert_eq!(login(gw, body.clone()).await.token(), token);
    }
    assert_eq!(c.fake.calls_for_code(&code), 1);
}

#[tokio::test]
#[ignore = "needs redis-server"]
async fn a_definitive_error_is_shared_by_the_replicas() {
    let c = Cluster::start(2, |c| c, "").await;
    c.fake.block_user(APPID, "o-mallory");
    let code = c.fake.mint_code(APPID, "o-mallory");
    c.fake.push_fault(Fault::Delay(Duration::from_millis(300)));
    let body = json!({ "code": code });
    let (a, b) = tokio::join!(
        login(&c.replicas[0], body.clone()),
        login(&c.replicas[1], body.clone())
    );
    a.assert_error(403, "user_blocked");
    b.assert_error(403, "user_blocked");
    login(&c.replicas[1], body)
        .await
        .assert_error(403, "user_blocked");
    assert_eq!(c.fake.calls_for_code(&code), 1);
}

#[tokio::test]
#[ignore = "needs redis-server"]
async fn a_logout_on_one_replica_is_refused_on_the_others_within_a_second() {
    let c = Cluster::start(3, |c| c, "").await;
    let token = c.login_on(0, "o-alice").await;
    for gw in &c.replicas {
        assert_eq!(get(gw, "/api/x", Some(&token)).await.status, 200);
        assert_eq!(get(gw, "/auth/session", Some(&token)).await.status, 200);
    }
    assert_eq!(logout(&c.replicas[1], Some(&token)).await.status, 204);
    for gw in &c.replicas {
        let took = within(Duration::from_secs(1), "revocation seen", || async {
            get(gw, "/api/x", Some(&token)).await.status == 401
        })
        .await;
        eprintln!("revocation seen after {took:?}");
        get(gw, "/api/x", Some(&token))
            .await
            .assert_error(401, "token_revoked");
        get(gw, "/auth/session", Some(&token))
            .await
            .assert_error(401, "token_revoked");
    }
    // The session_key went with it, for every replica.
    let store = c.replicas[2].gw.store();
    assert!(store.session(APPID, "o-alice").await.unwrap().is_none());
}

#[tokio::test]
#[ignore = "needs redis-server"]
async fn the_login_rate_limit_is_one_budget_across_replicas() {
    let c = Cluster::start(3, |c| rate_limit(&c, "3/min"), "").await;
    let mut statuses = Vec::new();
    for i in 0..6 {
        let res = client()
            .post(c.replicas[i % 3].url("/auth/login"))
            .header("content-type", "application/json")
            .body(r#"{"code": "bad code"}"#)
            .send()
            .await
            .unwrap();
        statuses.push(res.status().as_u16());
    }
    // Three admitted (and refused for the code), then the budget is spent
    // on every replica.
    assert_eq!(statuses, [400, 400, 400, 429, 429, 429]);
}

async fn redis_down(on_error: &str) {
    let c = Cluster::start(2, |c| c, &format!("on_error = \"{on_error}\"")).await;
    let token = c.login_on(0, "o-alice").await;
    let revoked = c.login_on(0, "o-bob").await;
    assert_eq!(logout(&c.replicas[0], Some(&revoked)).await.status, 204);
    within(Duration::from_secs(1), "revocation seen", || async {
        get(&c.replicas[1], "/api/x", Some(&revoked)).await.status == 401
    })
    .await;

    let mut redis = c.redis;
    redis.kill();
    for gw in &c.replicas {
        wait_store_up(gw, 0.0).await;
        // Logins and logouts are refused, never answered as if stored.
        let code = c.fake.mint_code(APPID, "o-carol");
        login(gw, json!({ "code": code }))
            .await
            .assert_error(503, "store_unavailable");
        assert_eq!(c.fake.calls_for_code(&code), 0, "refused before WeChat");
        logout(gw, Some(&token))
            .await
            .assert_error(503, "store_unavailable");
        let (live, known_revoked) = (
            get(gw, "/api/x", Some(&token)).await,
            get(gw, "/api/x", Some(&revoked)).await,
        );
        if on_error == "open" {
            assert_eq!(live.status, 200, "{}", live.body);
            known_revoked.assert_error(401, "token_revoked");
        } else {
            live.assert_error(503, "store_unavailable");
            known_revoked.assert_error(503, "store_unavailable");
        }
        // Public routes and readiness do not depend on Redis.
        assert_eq!(get(gw, "/public/x", None).await.status, 200);
        let ready = client().get(gw.admin_url("/readyz")).send().await.unwrap();
        assert_eq!(ready.status(), 200);
        let metrics = scrape(&gw.admin_url("/metrics")).await;
        let errors: f64 = metrics
            .label_values("wxgate_store_errors_total", "op")
            .iter()
            .map(|op| metrics.value("wxgate_store_errors_total", &[("op", op)]))
            .sum();
        assert!(errors > 0.0, "no store error counted");
    }
    // The token that was refused a logout is still good on return.
    redis.restart();
    for gw in &c.replicas {
        wait_store_up(gw, 1.0).await;
    }
    assert_eq!(logout(&c.replicas[1], Some(&token)).await.status, 204);
}

#[tokio::test]
#[ignore = "needs redis-server"]
async fn redis_down_with_on_error_open() {
    redis_down("open").await;
}

#[tokio::test]
#[ignore = "needs redis-server"]
async fn redis_down_with_on_error_closed() {
    redis_down("closed").await;
}

#[tokio::test]
#[ignore = "needs redis-server"]
async fn after_a_restart_or_a_flush_logins_recover_and_revocations_stay() {
    let mut c = Cluster::start(2, |c| c, "").await;
    let revoked = c.login_on(0, "o-alice").await;
    assert_eq!(logout(&c.replicas[0], Some(&revoked)).await.status, 204);
    within(Duration::from_secs(1), "revocation seen", || async {
        get(&c.replicas[1], "/api/x", Some(&revoked)).await.status == 401
    })
    .await;

    // Restarted without persistence: Redis forgot everything.
    c.redis.restart();
    for i in 0..2 {
        let gw = &c.replicas[i];
        within(
            Duration::from_secs(10),
            "login after the restart",
            || async {
                let code = c.fake.mint_code(APPID, "o-bob");
                login(gw, json!({ "code": code })).await.status == 200
            },
        )
        .await;
        get(gw, "/api/x", Some(&revoked))
            .await
            .assert_error(401, "token_revoked");
    }
    // The replicas wrote the revocation back for replicas yet to start.
    let jti = decode(&revoked).1["jti"].as_str().unwrap().to_owned();
    let mut conn = c.redis.connection().await;
    let zset = format!("{PREFIX}revoked");
    let score: Option<u64> = redis::cmd("ZSCORE")
        .arg(&zset)
        .arg(&jti)
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(score.is_some(), "the revocation was not written back");
    let late = TestGateway::start(&c.config).await;
    wait_store_up(&late, 1.0).await;
    get(&late, "/api/x", Some(&revoked))
        .await
        .assert_error(401, "token_revoked");

    // Flushed while connected: nothing known is forgotten, and logouts
    // still reach every replica.
    let _: () = redis::cmd("FLUSHALL").query_async(&mut conn).await.unwrap();
    c.replicas.push(late);
    let token = c.login_on(1, "o-carol").await;
    assert_eq!(logout(&c.replicas[1], Some(&token)).await.status, 204);
    for gw in &c.replicas {
        within(Duration::from_secs(1), "revocation seen", || async {
            get(gw, "/api/x", Some(&token)).await.status == 401
        })
        .await;
        get(gw, "/api/x", Some(&revoked))
            .await
            .assert_error(401, "token_revoked");
    }
}

#[tokio::test]
#[ignore = "needs redis-server"]
async fn wxgate_starts_while_redis_is_down_and_connects_when_it_returns() {
    let mut redis = RedisServer::start();
    redis.kill();
    let fake = FakeWeChat::start().await;
    fake.add_app(APPID, APP_SECRET);
    let up = Upstream::start().await;
    let config = format!(
        "{}{}",
        base_config(&up.url(), &fake.base_url()),
        redis_store(&redis.url(), "")
    );
    let gw = TestGateway::start(&config).await;
    let ready = client().get(gw.admin_url("/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), 200);
    assert_eq!(store_up(&gw).await, 0.0);
    let code = fake.mint_code(APPID, "o-alice");
    login(&gw, json!({ "code": code }))
        .await
        .assert_error(503, "store_unavailable");
    redis.restart();
    within(
        Duration::from_secs(10),
        "login once Redis is up",
        || async { login(&gw, json!({ "code": code })).await.status == 200 },
    )
    .await;
    assert_eq!(store_up(&gw).await, 1.0);
}

#[tokio::test]
#[ignore = "needs redis-server"]
async fn a_replica_killed_while_it_holds_a_code_is_taken_over_within_the_bound() {
    let c = Cluster::start(1, |c| c, "").await;
    let dir = tempfile::tempdir().unwrap();
    let mut doomed = Proc::start(&write_config(dir.path(), &c.config));
    let (listen, _) = doomed.addresses();
    let code = c.fake.mint_code(APPID, "o-alice");
    // The doomed replica's call hangs at WeChat (and consumes nothing).
    c.fake.push_fault(Fault::Delay(Duration::from_secs(30)));
    let request = tokio::spawn(
        client()
            .post(format!("http://{listen}/auth/login"))
            .header("content-type", "application/json")
            .body(json!({ "code": code }).to_string())
            .send(),
    );
    c.fake.wait_for_calls(1).await;
    doomed.signal("KILL");
    doomed.wait_exit_any();
    assert!(
        request.await.unwrap().is_err(),
        "the killed replica answered"
    );

    // wechat.timeout (2 s) + 1 s: the claim's life; then one more call.
    let bound = Duration::from_secs(3) + Duration::from_secs(2);
    let started = Instant::now();
    let answer = login(&c.replicas[0], json!({ "code": code })).await;
    let took = started.elapsed();
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert!(took < bound, "took {took:?}");
    eprintln!("a dead replica's code was taken over after {took:?}");
    assert_eq!(c.fake.calls_for_code(&code), 2);
}

#[tokio::test]
#[ignore = "needs redis-server"]
async fn redis_holds_no_secret_in_clear_and_every_key_is_under_the_prefix() {
    let c = Cluster::start(2, |c| rate_limit(&c, "100/min"), "").await;
    c.fake.set_unionid(APPID, "o-alice", Some("u-alice"));
    let mut codes = Vec::new();
    let mut tokens = Vec::new();
    let mut session_keys = Vec::new();
    for (i, openid) in ["o-alice", "o-bob", "o-carol"].iter().enumerate() {
        let code = c.fake.mint_code(APPID, openid);
        let answer = login(&c.replicas[i % 2], json!({ "code": code })).await;
        assert_eq!(answer.status, 200, "{}", answer.body);
        // Shared by the other replica.
        let again = login(&c.replicas[(i + 1) % 2], json!({ "code": code })).await;
        assert_eq!(again.token(), answer.token());
        tokens.push(answer.token());
        codes.push(code);
        session_keys.push(c.fake.session_key(APPID, openid).unwrap());
    }
    c.fake.block_user(APPID, "o-mallory");
    let refused = c.fake.mint_code(APPID, "o-mallory");
    login(&c.replicas[0], json!({ "code": refused }))
        .await
        .assert_error(403, "user_blocked");
    codes.push(refused);
    assert_eq!(logout(&c.replicas[1], Some(&tokens[1])).await.status, 204);

    let mut secrets: Vec<(String, Vec<u8>)> = vec![
        ("AppSecret".into(), APP_SECRET.into()),
        ("JWT key".into(), JWT_SECRET.into()),
        ("encryption key".into(), STORE_KEY.to_vec()),
        ("encryption key (base64)".into(), STORE_KEY_B64.into()),
    ];
    for (i, key) in session_keys.iter().enumerate() {
        secrets.push((format!("session_key {i}"), key.clone().into_bytes()));
        let raw = STANDARD.decode(key).expect("session_key is base64");
        assert_eq!(raw.len(), 16);
        secrets.push((format!("session_key {i} (bytes)"), raw));
    }
    for (i, code) in codes.iter().enumerate() {
        secrets.push((format!("code {i}"), code.clone().into_bytes()));
    }
    for (i, token) in tokens.iter().enumerate() {
        secrets.push((format!("token {i}"), token.clone().into_bytes()));
        // The signature alone would let no one in, but is no business of Redis.
        let signature = token.rsplit('.').next().unwrap();
        secrets.push((format!("token {i} signature"), signature.into()));
    }

    let dump = c.redis.dump().await;
    let names: Vec<String> = dump
        .iter()
        .map(|(k, _)| String::from_utf8_lossy(k).into_owned())
        .collect();
    for kind in ["code:", "session:", "revoked", "rl:"] {
        assert!(
            names
                .iter()
                .any(|n| n.starts_with(&format!("{PREFIX}{kind}"))),
            "no {kind} key in {names:?}"
        );
    }
    for (key, values) in &dump {
        assert!(
            key.starts_with(PREFIX.as_bytes()),
            "{key:?} outside the prefix"
        );
        for blob in values.iter().chain([key]) {
            for (what, secret) in &secrets {
                assert!(
                    !blob.windows(secret.len()).any(|w| w == &secret[..]),
                    "{what} in clear in Redis under {}",
                    String::from_utf8_lossy(key)
                );
            }
        }
    }
}

/// `rediss://`: the store over TLS, the server's certificate checked
/// against the system's trust (here `SSL_CERT_FILE`, which rustls-native-certs
/// reads), through the real binary.
#[tokio::test]
#[ignore = "needs redis-server"]
async fn the_store_speaks_tls_and_checks_the_certificate() {
    let ca = crate::common::tls::TestCa::new("wxgate test Redis CA");
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = ca.issue(1).write(dir.path());
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, &ca.pem).unwrap();
    let redis = RedisServer::start_tls(&cert, &key);
    assert!(redis.url().starts_with("rediss://"));
    let fake = FakeWeChat::start().await;
    fake.add_app(APPID, APP_SECRET);
    let up = Upstream::start().await;
    let config = format!(
        "{}{}",
        base_config(&up.url(), &fake.base_url()),
        redis_store(&redis.url(), "")
    );
    let config = write_config(dir.path(), &config);
    let login_on = |listen: String, openid: &str| {
        let code = fake.mint_code(APPID, openid);
        async move {
            let answer = client()
                .post(format!("http://{listen}/auth/login"))
                .header("content-type", "application/json")
                .body(json!({ "code": code }).to_string())
                .send()
                .await
                .unwrap();
            answer.status().as_u16()
        }
    };

    let ca_path = ca_file.display().to_string();
    let mut trusting = Proc::start_with_env(&config, &[("SSL_CERT_FILE", &ca_path)]);
    let (listen, _) = trusting.addresses();
    within(Duration::from_secs(10), "a login over rediss://", || {
        let status = login_on(listen.clone(), "o-alice");
        async move { status.await == 200 }
    })
    .await;
    trusting.stop();

    // Trusting only another CA: the certificate is refused, so is the login.
    let other = crate::common::tls::TestCa::new("another CA");
    let other_file = dir.path().join("other.pem");
    std::fs::write(&other_file, &other.pem).unwrap();
    let other_path = other_file.display().to_string();
    let mut wary = Proc::start_with_env(
        &config,
        &[
            ("SSL_CERT_FILE", &other_path),
            ("RUST_LOG", "info,wxgate=debug"),
        ],
    );
    let (listen, _) = wary.addresses();
    let refused = wary.wait_for("the Redis store does not answer");
    assert!(refused.contains("certificate"), "{refused}");
    assert_eq!(login_on(listen, "o-bob").await, 503);
    wary.stop();
}

//! The internal API's access_token: got with stable_token (normal mode),
//! kept and shared, one WeChat call however many callers wait, renewed
//! ahead of expiry; invalidate renews only the token held and forces only
//! when WeChat hands the refused one back, within WeChat's limits; a
//! reload that changes the app's secret drops the token; WeChat's failures
//! become the contract's errors.

use std::time::Duration;

use crate::common::fake_wechat::internal::ApiFault;
use crate::common::internal_api::*;
use crate::common::*;

#[tokio::test]
async fn the_token_is_got_once_and_shared() {
    let t = Internal::start(&with_token()).await;
    let first = t.get("access_token").await;
    assert_eq!(first.status, 200, "{}", first.text());
    assert_eq!(first.content_type.as_deref(), Some("application/json"));
    assert_eq!(first.cache_control.as_deref(), Some("no-store"));
    let body = first.json();
    let token = first.token();
    assert_eq!(Some(token.clone()), t.fake().current_token(APPID));
    let expires_in = body["expires_in"].as_u64().unwrap();
    assert!((7190..=7200).contains(&expires_in), "{body}");
    assert_eq!(body.as_object().unwrap().len(), 2, "{body}");

    for _ in 0..3 {
        assert_eq!(t.access_token().await, token);
    }
    assert_eq!(t.fake().stable_token_calls(APPID), 1);
    // Normal mode, the app's own credentials; never /cgi-bin/token.
    let call = &t.fake().api_calls("/cgi-bin/stable_token")[0];
    let sent: serde_json::Value = serde_json::from_slice(&call.body).unwrap();
    assert_eq!(sent["grant_type"], "client_credential");
    assert_eq!(sent["appid"], APPID);
    assert_eq!(sent["force_refresh"], false);
    assert_eq!(t.fake().plain_token_calls(), 0);
    assert_eq!(t.refreshes("ok").await, 1.0);
    assert_eq!(t.requests("access_token", "200").await, 4.0);
}

#[tokio::test]
async fn fifty_concurrent_requests_make_one_wechat_call() {
    let t = Internal::start(&with_token()).await;
    let release = t.fake().hold_stable_token();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..50 {
        let request = t.request(reqwest::Method::GET, "access_token");
        tasks.spawn(async move { Reply::read(request.send().await.unwrap()).await });
    }
    // The first call reached WeChat and is held there; the others wait.
    eventually(Duration::from_secs(10), "a stable_token call", || async {
        (!t.fake().api_calls("/cgi-bin/stable_token").is_empty()).then_some(())
    })
    .await;
    release.send(true).unwrap();
    let mut tokens = std::collections::HashSet::new();
    while let Some(reply) = tasks.join_next().await {
        tokens.insert(reply.unwrap().token());
    }
    assert_eq!(tokens.len(), 1, "{tokens:?}");
    assert_eq!(t.fake().api_calls("/cgi-bin/stable_token").len(), 1);
    assert_eq!(t.refreshes("ok").await, 1.0);
}

#[tokio::test]
async fn the_token_is_renewed_before_it_expires() {
    let t = Internal::start(&with_token()).await;
    // A 2 s life: renewed halfway (a full life renews 300 s ahead).
    t.fake().set_token_life(2);
    let reply = t.get("access_token").await;
    let first = reply.token();
    assert!(reply.json()["expires_in"].as_u64().unwrap() <= 2);
    eventually(Duration::from_secs(10), "the token renewed", || async {
        (t.access_token().await != first).then_some(())
    })
    .await;
    assert_eq!(t.fake().stable_token_calls(APPID), 2);
    assert_eq!(t.fake().forced(APPID), 0);
}

#[tokio::test]
async fn invalidate_renews_only_the_token_held_and_forces_sparingly() {
    let t = Internal::start(&with_token()).await;
    let invalidate = |token: &str| {
        t.post_json(
            "access_token/invalidate",
            serde_json::json!({ "access_token": token }),
        )
    };
    let t1 = t.access_token().await;
    // Someone else took a new token: WeChat refuses t1 and hands out t2.
    t.fake().rotate_token(APPID);
    let t2 = t.fake().current_token(APPID).unwrap();
    assert_eq!(invalidate(&t1).await.token(), t2);
    assert_eq!(t.fake().stable_token_calls(APPID), 2);
    // A second backend reports t1 late: t2 is held, no WeChat call.
    assert_eq!(invalidate(&t1).await.token(), t2);
    assert_eq!(t.fake().stable_token_calls(APPID), 2);
    // WeChat hands back the refused token: one force refresh.
    let t3 = invalidate(&t2).await.token();
    assert_ne!(t3, t2);
    assert_eq!(Some(t3.clone()), t.fake().current_token(APPID));
    assert_eq!(t.fake().forced(APPID), 1);
    assert_eq!(t.access_token().await, t3);
    // Again within 30 s: no second force; the token in force comes back.
    assert_eq!(invalidate(&t3).await.token(), t3);
    assert_eq!(t.fake().forced(APPID), 1);
    assert_eq!(t.requests("invalidate", "200").await, 4.0);

    for bad in [
        serde_json::json!({}),
        serde_json::json!({ "access_token": "" }),
        serde_json::json!({ "access_token": 5 }),
    ] {
        t.post_json("access_token/invalidate", bad)
            .await
            .assert_error(400, "invalid_request");
    }
}

#[tokio::test]
async fn a_reload_that_changes_the_secret_drops_the_token() {
    let t = Internal::start(&with_token()).await;
    let first = t.access_token().await;
    let config = |secret: &str| {
        let text = format!(
            "{}\n{}",
            base_config(&t.setup.up.url(), &t.fake().base_url()),
            with_token()
        )
        .edit(APP_SECRET, secret);
        wxgate::Config::parse_with_env(
            &text,
            std::path::Path::new("t.toml"),
            Some(Default::default()),
        )
        .unwrap()
    };
    // Same secret: the token stays.
    t.gw().gw.install(config(APP_SECRET)).unwrap();
    assert_eq!(t.access_token().await, first);
    assert_eq!(t.fake().stable_token_calls(APPID), 1);
    // A new secret: the next caller gets a token issued for it.
    let new_secret = "the-rotated-app-secret-0123456789";
    t.fake().add_app(APPID, new_secret);
    t.gw().gw.install(config(new_secret)).unwrap();
    t.access_token().await;
    assert_eq!(t.fake().stable_token_calls(APPID), 2);
    let call = t.fake().api_calls("/cgi-bin/stable_token").pop().unwrap();
    let sent: serde_json::Value = serde_json::from_slice(&call.body).unwrap();
    assert_eq!(sent["secret"], new_secret);
}

#[tokio::test]
async fn wechat_failures_are_the_contracts_errors() {
    let t = Internal::with(&with_token(), |c| {
        c.edit("timeout = \"2s\"", "timeout = \"500ms\"")
    })
    .await;
    for (fault, status, code) in [
        (ApiFault::Errcode(-1), 503, "wechat_unavailable"),
        (ApiFault::Errcode(40013), 500, "gateway_misconfigured"),
        (ApiFault::Errcode(40164), 500, "gateway_misconfigured"),
        (ApiFault::Errcode(45009), 502, "wechat_error"),
        (ApiFault::Http502Html, 503, "wechat_unavailable"),
        (ApiFault::NotJson, 503, "wechat_unavailable"),
        (ApiFault::Reset, 503, "wechat_unavailable"),
        (
            ApiFault::Delay(Duration::from_secs(3)),
            504,
            "wechat_timeout",
        ),
    ] {
        t.fake().push_token_fault(fault.clone());
        let reply = t.get("access_token").await;
        reply.assert_error(status, code);
        assert!(
            !reply.text().contains("secret"),
            "{fault:?}: {}",
            reply.text()
        );
    }
    // A failure is not remembered: the next caller gets a token.
    t.access_token().await;
    assert_eq!(t.refreshes("ok").await, 1.0);
    assert_eq!(t.refreshes("wechat_unavailable").await, 4.0);
    assert_eq!(t.refreshes("gateway_misconfigured").await, 2.0);
    assert_eq!(t.refreshes("wechat_timeout").await, 1.0);

    // The configured secret is wrong (40125).
    let wrong = Internal::with(&with_token(), |c| {
        c.edit(APP_SECRET, "not-the-secret-0123456789")
    })
    .await;
    wrong
        .get("access_token")
        .await
        .assert_error(500, "gateway_misconfigured");
}

//! Login when WeChat says no, says nothing, or says something strange: the
//! contract's errcode table, transport faults, the lost answer, and which
//! outcomes are remembered for the code's life.

use std::time::{Duration, Instant};

use serde_json::json;

use crate::common::fake_wechat::{FakeWeChat, Fault};
use crate::common::login_flow::*;
use crate::common::upstream::Upstream;
use crate::common::*;

/// Logs in with a fresh valid code after queueing `fault`.
async fn login_with_fault(s: &Setup, fault: Fault) -> Answer {
    let code = s.fake.mint_code(APPID, "o-alice");
    s.fake.push_fault(fault);
    s.login(&code).await
}

#[tokio::test]
async fn errcode_40029_is_invalid_code() {
    let s = Setup::start().await;
    // Unknown, expired, and minted for another app: all 40029 at WeChat.
    s.login("never-minted-code")
        .await
        .assert_error(401, "invalid_code");
    let code = s.fake.mint_code(APPID, "o-alice");
    s.fake.expire_code(&code);
    let answer = s.login(&code).await;
    answer.assert_error(401, "invalid_code");
    assert_eq!(
        answer.header("www-authenticate"),
        Some("Bearer realm=\"wxgate\"")
    );
    let code = s.fake.mint_code(APPID2, "o-alice");
    s.login(&code).await.assert_error(401, "invalid_code");
    assert_eq!(s.fake.calls(), 3);
}

#[tokio::test]
async fn errcode_40163_is_code_used() {
    // Two gateways share one WeChat: the second to exchange a code gets 40163.
    let fake = FakeWeChat::start().await;
    fake.add_app(APPID, APP_SECRET);
    let up = Upstream::start().await;
    let config = base_config(&up.url(), &fake.base_url());
    let first = TestGateway::start(&config).await;
    let second = TestGateway::start(&config).await;
    let code = fake.mint_code(APPID, "o-alice");
    let answer = login(&first, json!({ "code": code })).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    login(&second, json!({ "code": code }))
        .await
        .assert_error(401, "code_used");
    assert_eq!(fake.calls_for_code(&code), 2);

    // And as an injected answer.
    let s = Setup::start().await;
    login_with_fault(&s, Fault::Errcode(40163))
        .await
        .assert_error(401, "code_used");
}

#[tokio::test]
async fn errcode_40226_is_user_blocked() {
    let s = Setup::start().await;
    s.fake.block_user(APPID, "o-mallory");
    let code = s.fake.mint_code(APPID, "o-mallory");
    s.login(&code).await.assert_error(403, "user_blocked");
    let claim =
        s.gw.gw
            .store()
            .claim_code(APPID, &code, Duration::from_secs(1), false);
    assert!(matches!(
        claim.await.unwrap(),
        wxgate::store::Claim::Done(_)
    ));
}

#[tokio::test]
async fn errcode_45011_is_rate_limited() {
    let s = Setup::start().await;
    let answer = login_with_fault(&s, Fault::Errcode(45011)).await;
    answer.assert_error(429, "rate_limited");
    assert!(answer.header("retry-after").is_some(), "Retry-After");
}

#[tokio::test]
async fn errcode_minus_1_is_wechat_unavailable() {
    let s = Setup::start().await;
    login_with_fault(&s, Fault::Errcode(-1))
        .await
        .assert_error(503, "wechat_unavailable");
}

#[tokio::test]
async fn an_appid_wechat_does_not_know_is_gateway_misconfigured() {
    let fake = FakeWeChat::start().await;
    // The app is configured in the gateway but unknown to WeChat: 40013.
    let up = Upstream::start().await;
    let gw = TestGateway::start(&base_config(&up.url(), &fake.base_url())).await;
    let code = fake.mint_code(APPID, "o-alice");
    let answer = login(&gw, json!({ "code": code })).await;
    answer.assert_error(500, "gateway_misconfigured");
    assert!(answer.json()["message"].as_str().unwrap().contains("40013"));
}

#[tokio::test]
async fn a_wrong_secret_is_gateway_misconfigured() {
    let fake = FakeWeChat::start().await;
    fake.add_app(APPID, "the-real-secret-is-different-0000");
    let up = Upstream::start().await;
    let gw = TestGateway::start(&base_config(&up.url(), &fake.base_url())).await;
    let code = fake.mint_code(APPID, "o-alice");
    let answer = login(&gw, json!({ "code": code })).await;
    answer.assert_error(500, "gateway_misconfigured");
    assert!(answer.json()["message"].as_str().unwrap().contains("40125"));
    assert!(!answer.body.contains(APP_SECRET));
}

#[tokio::test]
async fn an_unknown_errcode_is_wechat_error_naming_it() {
    let s = Setup::start().await;
    let answer = login_with_fault(&s, Fault::Errcode(99999)).await;
    answer.assert_error(502, "wechat_error");
    assert!(
        answer.json()["message"].as_str().unwrap().contains("99999"),
        "{}",
        answer.body
    );
}

#[tokio::test]
async fn an_errcode_sent_as_a_string_is_read_as_a_number() {
    let s = Setup::start().await;
    login_with_fault(&s, Fault::ErrcodeAsString(40029))
        .await
        .assert_error(401, "invalid_code");
    login_with_fault(&s, Fault::ErrcodeAsString(40226))
        .await
        .assert_error(403, "user_blocked");
    login_with_fault(&s, Fault::ErrcodeAsString(99999))
        .await
        .assert_error(502, "wechat_error");
}

#[tokio::test]
async fn wechat_slower_than_its_timeout_is_504() {
    let s = Setup::with(|c| c.edit("timeout = \"2s\"", "timeout = \"300ms\"")).await;
    let started = Instant::now();
    let answer = login_with_fault(&s, Fault::Delay(Duration::from_secs(3))).await;
    answer.assert_error(504, "wechat_timeout");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "the timeout did not bound the call: {:?}",
        started.elapsed()
    );
    assert_eq!(s.fake.calls(), 1);
}

#[tokio::test]
async fn transport_and_garbage_faults_are_503() {
    let s = Setup::start().await;
    for fault in [
        Fault::Reset,
        Fault::Http502Html,
        Fault::MalformedJson,
        Fault::EmptySessionKey,
        Fault::Raw(String::new()),
        Fault::Raw("null".into()),
        Fault::Raw(r#"{"openid":"o-alice"}"#.into()),
        Fault::Raw(r#"{"errcode":"busy"}"#.into()),
    ] {
        let calls = s.fake.calls();
        let answer = login_with_fault(&s, fault.clone()).await;
        assert_eq!(
            (answer.status, answer.error().as_str()),
            (503, "wechat_unavailable"),
            "{fault:?}: {}",
            answer.body
        );
        assert_eq!(s.fake.calls(), calls + 1, "{fault:?}: one call, no retry");
    }
}

#[tokio::test]
async fn unreachable_wechat_is_503() {
    let up = Upstream::start().await;
    let closed = closed_port();
    let gw = TestGateway::start(&base_config(&up.url(), &format!("http://{closed}"))).await;
    login(&gw, json!({ "code": "some-code-0123456789" }))
        .await
        .assert_error(503, "wechat_unavailable");
}

#[tokio::test]
async fn an_oversized_wechat_answer_is_503() {
    let s = Setup::start().await;
    let huge = format!(
        r#"{{"session_key":"a2V5a2V5a2V5a2V5a2V5aw==","openid":"o-alice","pad":"{}"}}"#,
        "x".repeat(200 * 1024)
    );
    login_with_fault(&s, Fault::Raw(huge))
        .await
        .assert_error(503, "wechat_unavailable");
}

#[tokio::test]
async fn an_empty_unionid_counts_as_none() {
    let s = Setup::start().await;
    let raw_answer =
        r#"{"session_key":"a2V5a2V5a2V5a2V5a2V5aw==","openid":"o-frank","unionid":""}"#;
    let answer = login_with_fault(&s, Fault::Raw(raw_answer.into())).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert!(decode(&answer.token()).1.get("unionid").is_none());
}

#[tokio::test]
async fn a_redirect_is_not_followed() {
    let s = Setup::start().await;
    login_with_fault(&s, Fault::Redirect302)
        .await
        .assert_error(503, "wechat_unavailable");
    assert_eq!(s.fake.calls(), 1);
}

#[tokio::test]
async fn an_openid_that_would_split_a_header_is_refused() {
    let s = Setup::start().await;
    let raw_answer =
        r#"{"session_key":"a2V5a2V5a2V5a2V5a2V5aw==","openid":"o-eve\r\nX-WX-OpenID: admin"}"#;
    let answer = login_with_fault(&s, Fault::Raw(raw_answer.into())).await;
    answer.assert_error(503, "wechat_unavailable");
    assert!(answer.json().get("access_token").is_none());
    assert!(s
        .gw
        .gw
        .store()
        .session(APPID, "o-eve")
        .await
        .unwrap()
        .is_none());
    assert!(s
        .gw
        .gw
        .store()
        .session(APPID, "o-eve\r\nX-WX-OpenID: admin")
        .await
        .unwrap()
        .is_none());
    // Nothing reached the upstream either.
    assert!(s.up.requests().is_empty());

    let raw_answer =
        r#"{"session_key":"a2V5a2V5a2V5a2V5a2V5aw==","openid":"o-eve","unionid":"u\nx"}"#;
    login_with_fault(&s, Fault::Raw(raw_answer.into()))
        .await
        .assert_error(503, "wechat_unavailable");
}

#[tokio::test]
async fn wechat_answers_with_extra_fields_and_errcode_0_are_success() {
    let s = Setup::start().await;
    let raw_answer = r#"{"errcode":0,"errmsg":"ok","session_key":"a2V5a2V5a2V5a2V5a2V5aw==","openid":"o-dave","expires_in":7200,"new":true}"#;
    let answer = login_with_fault(&s, Fault::Raw(raw_answer.into())).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(decode(&answer.token()).1["sub"], "o-dave");
}

#[tokio::test]
async fn a_lost_answer_is_503_never_retried_and_the_retry_meets_40163() {
    let s = Setup::start().await;
    let code = s.fake.mint_code(APPID, "o-alice");
    s.fake.push_fault(Fault::ConsumeThenDrop);
    s.login(&code).await.assert_error(503, "wechat_unavailable");
    assert_eq!(s.fake.calls(), 1, "the gateway retried the exchange");

    // The client retries; WeChat has burnt the code.
    s.login(&code).await.assert_error(401, "code_used");
    assert_eq!(s.fake.calls_for_code(&code), 2);
    // That answer is definitive: a third try costs no call.
    s.login(&code).await.assert_error(401, "code_used");
    assert_eq!(s.fake.calls_for_code(&code), 2);
}

#[tokio::test]
async fn a_transient_failure_is_not_remembered() {
    let s = Setup::start().await;
    for fault in [
        Fault::Errcode(-1),
        Fault::Errcode(45011),
        Fault::Reset,
        Fault::MalformedJson,
    ] {
        let code = s.fake.mint_code(APPID, "o-alice");
        s.fake.push_fault(fault.clone());
        let answer = s.login(&code).await;
        assert!(answer.status >= 429, "{fault:?}: {}", answer.body);
        let answer = s.login(&code).await;
        assert_eq!(answer.status, 200, "retry after {fault:?}: {}", answer.body);
        assert_eq!(s.fake.calls_for_code(&code), 2, "{fault:?}");
    }
}

#[tokio::test]
async fn a_timeout_is_not_remembered() {
    let s = Setup::with(|c| c.edit("timeout = \"2s\"", "timeout = \"300ms\"")).await;
    // The slow first call never reaches the checks before the retry does, so
    // the retry gets the code while it is still fresh.
    let code = s.fake.mint_code(APPID, "o-alice");
    s.fake.push_fault(Fault::Delay(Duration::from_secs(5)));
    s.login(&code).await.assert_error(504, "wechat_timeout");
    let answer = s.login(&code).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(s.fake.calls_for_code(&code), 2);
}

#[tokio::test]
async fn definitive_refusals_are_remembered() {
    let s = Setup::start().await;
    s.login("never-minted-code")
        .await
        .assert_error(401, "invalid_code");
    s.login("never-minted-code")
        .await
        .assert_error(401, "invalid_code");
    assert_eq!(s.fake.calls_for_code("never-minted-code"), 1);

    s.fake.block_user(APPID, "o-mallory");
    let code = s.fake.mint_code(APPID, "o-mallory");
    s.login(&code).await.assert_error(403, "user_blocked");
    s.login(&code).await.assert_error(403, "user_blocked");
    assert_eq!(s.fake.calls_for_code(&code), 1);

    // Per app: the same code text for another app is another code.
    let two = Setup::with(|c| with_app(&c, APPID2, APP_SECRET2)).await;
    two.fake.add_app(APPID2, APP_SECRET2);
    for appid in [APPID, APPID2] {
        login(
            &two.gw,
            json!({ "code": "never-minted-code", "appid": appid }),
        )
        .await
        .assert_error(401, "invalid_code");
    }
    assert_eq!(two.fake.calls_for_code("never-minted-code"), 2);
}

#[tokio::test]
async fn misconfiguration_is_not_remembered() {
    let fake = FakeWeChat::start().await;
    let up = Upstream::start().await;
    let gw = TestGateway::start(&base_config(&up.url(), &fake.base_url())).await;
    let code = fake.mint_code(APPID, "o-alice");
    login(&gw, json!({ "code": code }))
        .await
        .assert_error(500, "gateway_misconfigured");
    // The operator fixes WeChat's side; the same code now works.
    fake.add_app(APPID, APP_SECRET);
    let answer = login(&gw, json!({ "code": code })).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gateway_keeps_serving_while_wechat_hangs() {
    let s = Setup::start().await;
    let code = s.fake.mint_code(APPID, "o-alice");
    s.fake.push_fault(Fault::Delay(Duration::from_millis(1500)));
    let url = s.gw.url("/auth/login");
    let pending = tokio::spawn(async move {
        let res = client()
            .post(url)
            .header("content-type", "application/json")
            .body(json!({ "code": code }).to_string())
            .send()
            .await
            .unwrap();
        Answer::read(res).await
    });
    s.fake.wait_for_calls(1).await;
    // WeChat holds the login; other requests are not held behind it.
    for _ in 0..5 {
        let answer = get(&s.gw, "/public/ping", None).await;
        assert_eq!(answer.status, 200, "{}", answer.body);
    }
    let other = s.fake.mint_code(APPID, "o-bob");
    assert!(
        !pending.is_finished(),
        "the held login finished before the other requests"
    );
    // A login with another code is not queued behind the held one either.
    let answer = s.login(&other).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert!(!pending.is_finished());
    let held = pending.await.unwrap();
    assert_eq!(held.status, 200, "{}", held.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_hangs_up_does_not_cancel_the_exchange() {
    let s = Setup::start().await;
    let code = s.fake.mint_code(APPID, "o-alice");
    s.fake.push_fault(Fault::Delay(Duration::from_millis(500)));
    let url = s.gw.url("/auth/login");
    let body = json!({ "code": code }).to_string();
    let impatient = tokio::spawn(async move {
        client()
            .post(url)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
    });
    s.fake.wait_for_calls(1).await;
    impatient.abort();
    let _ = impatient.await;
    // The retry joins the exchange still in flight: no second call, no 40163.
    let answer = s.login(&code).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(s.fake.calls_for_code(&code), 1);
}

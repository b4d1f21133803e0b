//! The session lifecycle after login: `GET /auth/session`, `POST /auth/logout`
//! and what a logged-out token can still do (nothing), plus the simulated
//! WeChat of `[dev] simulate_wechat`.

use serde_json::json;

use crate::common::login_flow::*;
use crate::common::*;

fn assert_challenge(answer: &Answer, refused_token: bool) {
    let challenge = answer.header("www-authenticate").expect("WWW-Authenticate");
    assert!(
        challenge.starts_with("Bearer realm=\"wxgate\""),
        "{challenge}"
    );
    assert_eq!(
        challenge.contains("error=\"invalid_token\""),
        refused_token,
        "{challenge}"
    );
}

#[tokio::test]
async fn session_describes_the_token() {
    let s = Setup::with(|c| set(&c, "[token]", "ttl = \"1h\"")).await;
    s.fake.set_unionid(APPID, "o-bob", Some("u-bob"));
    let token = s.login_as("o-bob").await;
    let answer = get(&s.gw, "/auth/session", Some(&token)).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(answer.header("content-type"), Some("application/json"));
    let body = answer.json();
    assert_eq!(body["openid"], "o-bob");
    assert_eq!(body["appid"], APPID);
    assert_eq!(body["unionid"], "u-bob");
    let left = body["expires_in"].as_u64().expect("numeric expires_in");
    assert!((3500..=3600).contains(&left), "expires_in {left}");
    assert!(!answer.body.contains("session_key"), "{}", answer.body);
    let key = s.fake.session_key(APPID, "o-bob").unwrap();
    assert!(!answer.everything().contains(&key));
}

#[tokio::test]
async fn session_without_a_unionid_has_none() {
    let s = Setup::start().await;
    let token = s.login_as("o-carol").await;
    let answer = get(&s.gw, "/auth/session", Some(&token)).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    let body = answer.json();
    assert_eq!(body["openid"], "o-carol");
    assert!(body.get("unionid").is_none(), "{body}");
}

#[tokio::test]
async fn session_without_a_token_is_missing_token() {
    let s = Setup::start().await;
    let answer = get(&s.gw, "/auth/session", None).await;
    answer.assert_error(401, "missing_token");
    assert_challenge(&answer, false);
}

#[tokio::test]
async fn session_with_a_bad_token_is_invalid_token() {
    let s = Setup::start().await;
    let good = s.login_as("o-alice").await;
    // One signature character flipped.
    let mut tampered = good.clone();
    let last = tampered.pop().unwrap();
    tampered.push(if last == 'A' { 'B' } else { 'A' });
    // The signature left out.
    let (signed, _) = good.rsplit_once('.').unwrap();
    let unsigned = format!("{signed}.");
    for bad in ["garbage".to_owned(), "a.b.c".to_owned(), tampered, unsigned] {
        let answer = get(&s.gw, "/auth/session", Some(&bad)).await;
        answer.assert_error(401, "invalid_token");
        assert_challenge(&answer, true);
    }
}

#[tokio::test]
async fn logout_revokes_the_token_and_drops_the_session_key() {
    let s = Setup::start().await;
    let token = s.login_as("o-alice").await;
    let store = s.gw.gw.store();
    assert!(store.session(APPID, "o-alice").await.unwrap().is_some());
    assert_eq!(get(&s.gw, "/api/x", Some(&token)).await.status, 200);

    let answer = logout(&s.gw, Some(&token)).await;
    assert_eq!(answer.status, 204, "{}", answer.body);
    assert!(answer.body.is_empty(), "{}", answer.body);

    let answer = get(&s.gw, "/api/x", Some(&token)).await;
    answer.assert_error(401, "token_revoked");
    assert_challenge(&answer, true);
    let answer = get(&s.gw, "/auth/session", Some(&token)).await;
    answer.assert_error(401, "token_revoked");
    // Logging out twice: the token is refused like anywhere else.
    logout(&s.gw, Some(&token))
        .await
        .assert_error(401, "token_revoked");
    assert!(store.session(APPID, "o-alice").await.unwrap().is_none());
    assert_eq!(s.up.requests().len(), 1, "only the request before logout");
}

#[tokio::test]
async fn another_token_of_the_same_user_survives_the_logout() {
    let s = Setup::start().await;
    let phone = s.login_as("o-alice").await;
    let tablet = s.login_as("o-alice").await;
    assert_ne!(phone, tablet);
    assert_eq!(logout(&s.gw, Some(&phone)).await.status, 204);

    let answer = get(&s.gw, "/api/x", Some(&tablet)).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(s.up.last().unwrap().header("x-wx-openid"), Some("o-alice"));
    let answer = get(&s.gw, "/auth/session", Some(&tablet)).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(answer.json()["openid"], "o-alice");
    get(&s.gw, "/api/x", Some(&phone))
        .await
        .assert_error(401, "token_revoked");
    // Other users are untouched too.
    let bob = s.login_as("o-bob").await;
    assert_eq!(get(&s.gw, "/api/x", Some(&bob)).await.status, 200);
}

#[tokio::test]
async fn logout_without_a_valid_token_is_401() {
    let s = Setup::start().await;
    let token = s.login_as("o-alice").await;
    let answer = logout(&s.gw, None).await;
    answer.assert_error(401, "missing_token");
    assert_challenge(&answer, false);
    logout(&s.gw, Some("not.a.token"))
        .await
        .assert_error(401, "invalid_token");
    // Nothing was revoked or dropped by the refused logouts.
    assert!(s
        .gw
        .gw
        .store()
        .session(APPID, "o-alice")
        .await
        .unwrap()
        .is_some());
    assert_eq!(get(&s.gw, "/api/x", Some(&token)).await.status, 200);
}

#[tokio::test]
async fn session_and_logout_check_the_method() {
    let s = Setup::start().await;
    let token = s.login_as("o-alice").await;
    let res = client()
        .get(s.gw.url("/auth/logout"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    let answer = Answer::read(res).await;
    answer.assert_error(405, "method_not_allowed");
    assert_eq!(answer.header("allow"), Some("POST"));
    // A GET on logout does not log out.
    assert_eq!(get(&s.gw, "/api/x", Some(&token)).await.status, 200);

    let res = client()
        .post(s.gw.url("/auth/session"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    Answer::read(res)
        .await
        .assert_error(405, "method_not_allowed");
}

#[tokio::test]
async fn simulated_wechat_logs_in_dev_codes_without_calling_wechat() {
    let s = Setup::with(|c| format!("{c}\n[dev]\nsimulate_wechat = true\n")).await;
    let answer = s.login("dev-alice").await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    let token = answer.token();
    assert_eq!(decode(&token).1["sub"], "alice");
    let session = get(&s.gw, "/auth/session", Some(&token)).await;
    assert_eq!(session.json()["openid"], "alice");
    assert_eq!(get(&s.gw, "/api/x", Some(&token)).await.status, 200);
    assert_eq!(s.up.last().unwrap().header("x-wx-openid"), Some("alice"));
    assert!(s
        .gw
        .gw
        .store()
        .session(APPID, "alice")
        .await
        .unwrap()
        .is_some());

    // A real code is not a dev code: refused, and still no WeChat call.
    let real = s.fake.mint_code(APPID, "o-alice");
    s.login(&real).await.assert_error(401, "invalid_code");
    s.login("dev-").await.assert_error(401, "invalid_code");
    s.login("alice").await.assert_error(401, "invalid_code");
    let answer = login(&s.gw, json!({ "code": "dev-bob" })).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(s.fake.calls(), 0);
}

/// The quick start run twice: after a logout, `dev-alice` is a used code for
/// its 5 minutes, but `dev-alice.<anything>` is a fresh code for alice.
#[tokio::test]
async fn a_dev_code_with_a_suffix_is_a_fresh_code_for_the_same_user() {
    let s = Setup::with(|c| format!("{c}\n[dev]\nsimulate_wechat = true\n")).await;
    for run in ["1", "2"] {
        let code = format!("dev-alice.{run}");
        let answer = s.login(&code).await;
        assert_eq!(answer.status, 200, "{code}: {}", answer.body);
        let token = answer.token();
        assert_eq!(decode(&token).1["sub"], "alice");
        assert_eq!(logout(&s.gw, Some(&token)).await.status, 204);
        s.login(&code).await.assert_error(401, "code_used");
    }
    s.login("dev-.x").await.assert_error(401, "invalid_code");
    assert_eq!(s.fake.calls(), 0);
}

#[tokio::test]
async fn a_code_replayed_after_logout_does_not_hand_out_the_revoked_token() {
    let s = Setup::start().await;
    let code = s.fake.mint_code(APPID, "o-alice");
    let token = s.login(&code).await.token();
    assert_eq!(logout(&s.gw, Some(&token)).await.status, 204);

    // The code is still within its life, but its session has ended: the
    // answer may not be a 200 with a token that every route refuses.
    let answer = s.login(&code).await;
    answer.assert_error(401, "code_used");
    assert_eq!(s.fake.calls_for_code(&code), 1, "no second WeChat call");
    assert!(s
        .gw
        .gw
        .store()
        .session(APPID, "o-alice")
        .await
        .unwrap()
        .is_none());

    // A fresh code logs the user in again.
    let fresh = s.login_as("o-alice").await;
    assert_eq!(get(&s.gw, "/api/x", Some(&fresh)).await.status, 200);
}

//! What needs a user's session_key or a phone code: decrypt (the user's
//! latest session_key from the store, the watermark's appid and age), the
//! session check through /wxa/checksession, and phone numbers through
//! getuserphonenumber with its watermark; every error row of the contract.

use std::time::Duration;

use serde_json::json;

use crate::common::fake_wechat::internal::ApiFault;
use crate::common::internal_api::*;
use crate::common::*;

fn now() -> u64 {
    wxgate::auth::token::now()
}

fn steps() -> serde_json::Value {
    json!({"stepInfoList": [{"timestamp": 1_700_000_000u64, "step": 4321}]})
}

async fn decrypt(t: &Internal, openid: &str, data: &str, iv: &str) -> Reply {
    t.post_json(
        &format!("users/{openid}/decrypt"),
        json!({ "encryptedData": data, "iv": iv }),
    )
    .await
}

#[tokio::test]
async fn decrypt_uses_the_users_latest_session_key() {
    let t = Internal::start(&with_token()).await;
    t.setup.login_as("o-alice").await;
    let (data, iv) = t
        .fake()
        .encrypted_data(APPID, "o-alice", steps(), APPID, now());
    let reply = decrypt(&t, "o-alice", &data, &iv).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.content_type.as_deref(), Some("application/json"));
    assert_eq!(reply.cache_control.as_deref(), Some("no-store"));
    let body = reply.json();
    assert_eq!(body["stepInfoList"], steps()["stepInfoList"]);
    assert_eq!(body["watermark"]["appid"], APPID);

    // WeChat rotated the key and the client got data under the new one:
    // until the user logs in again, the stored key cannot decrypt it.
    t.fake().rotate_session_key(APPID, "o-alice");
    let (data, iv) = t
        .fake()
        .encrypted_data(APPID, "o-alice", steps(), APPID, now());
    decrypt(&t, "o-alice", &data, &iv)
        .await
        .assert_error(422, "decrypt_failed");
    t.setup.login_as("o-alice").await;
    assert_eq!(decrypt(&t, "o-alice", &data, &iv).await.status, 200);
    assert_eq!(t.requests("decrypt", "200").await, 2.0);
    assert_eq!(t.requests("decrypt", "422").await, 1.0);
}

#[tokio::test]
async fn decrypt_refusals() {
    let t = Internal::start(&format!("{}decrypt_max_age = \"60s\"\n", with_token())).await;
    t.setup.login_as("o-bob").await;
    let data = |appid: &str, at: u64| t.fake().encrypted_data(APPID, "o-bob", steps(), appid, at);

    let (d, iv) = data(APPID, now());
    decrypt(&t, "o-nobody", &d, &iv)
        .await
        .assert_error(404, "session_unknown");
    let (d, iv) = data("wxsomeoneelse0001", now());
    decrypt(&t, "o-bob", &d, &iv)
        .await
        .assert_error(422, "watermark_mismatch");
    let (d, iv) = data(APPID, now() - 120);
    decrypt(&t, "o-bob", &d, &iv)
        .await
        .assert_error(422, "watermark_mismatch");
    let (d, iv) = data(APPID, now() - 30);
    assert_eq!(decrypt(&t, "o-bob", &d, &iv).await.status, 200);
    // A logout drops the session_key.
    let token = t.setup.login_as("o-carol").await;
    let (d, iv) = t
        .fake()
        .encrypted_data(APPID, "o-carol", steps(), APPID, now());
    let res = client()
        .post(t.gw().url("/auth/logout"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 204);
    decrypt(&t, "o-carol", &d, &iv)
        .await
        .assert_error(404, "session_unknown");

    // The caller's mistakes.
    let (d, iv) = data(APPID, now());
    for (data, iv) in [
        (d.as_str(), "short"),
        (d.as_str(), ""),
        ("not base64!", iv.as_str()),
        ("AAAA", iv.as_str()),
    ] {
        decrypt(&t, "o-bob", data, iv)
            .await
            .assert_error(400, "invalid_request");
    }
    for body in [json!({}), json!({"encryptedData": d}), json!([1, 2])] {
        t.post_json("users/o-bob/decrypt", body)
            .await
            .assert_error(400, "invalid_request");
    }
    let res = t
        .request(reqwest::Method::POST, "users/o-bob/decrypt")
        .body(vec![b'{'; 2 * 1024 * 1024])
        .send()
        .await
        .unwrap();
    Reply::read(res)
        .await
        .assert_error(413, "payload_too_large");
}

#[tokio::test]
async fn the_session_check_asks_wechat() {
    let t = Internal::start(&with_token()).await;
    t.setup.login_as("o-dan").await;
    let reply = t.get("users/o-dan/session").await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(
        reply.json(),
        json!({"openid": "o-dan", "appid": APPID, "session_key_valid": true})
    );
    let call = t.fake().api_calls("/wxa/checksession").pop().unwrap();
    assert!(
        call.query.contains("sig_method=hmac_sha256"),
        "{}",
        call.query
    );

    t.fake().rotate_session_key(APPID, "o-dan");
    let reply = t.get("users/o-dan/session").await;
    assert_eq!(reply.json()["session_key_valid"], false);
    t.get("users/o-nobody/session")
        .await
        .assert_error(404, "session_unknown");

    // A refused token is renewed and the check asked again, once.
    t.fake().rotate_token(APPID);
    t.setup.login_as("o-dan").await;
    let reply = t.get("users/o-dan/session").await;
    assert_eq!(reply.json()["session_key_valid"], true, "{}", reply.text());
    assert_eq!(t.fake().api_calls("/wxa/checksession").len(), 4);

    for (fault, status, code) in [
        (ApiFault::Errcode(40013), 500, "gateway_misconfigured"),
        (ApiFault::Errcode(61024), 502, "wechat_error"),
        (ApiFault::Errcode(-1), 503, "wechat_unavailable"),
        (ApiFault::NotJson, 503, "wechat_unavailable"),
        (ApiFault::Http502Html, 503, "wechat_unavailable"),
    ] {
        t.fake().push_api_fault(fault);
        t.get("users/o-dan/session")
            .await
            .assert_error(status, code);
    }
}

#[tokio::test]
async fn phone_numbers() {
    let t = Internal::with(&with_token(), |c| {
        c.edit("timeout = \"2s\"", "timeout = \"500ms\"")
    })
    .await;
    let phone = |code: &str| t.post_json("phone_number", json!({ "code": code }));
    let code = t.fake().mint_phone_code(APPID, "86", "13800138000");
    let reply = phone(&code).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(
        reply.json(),
        json!({
            "phoneNumber": "+8613800138000",
            "purePhoneNumber": "13800138000",
            "countryCode": "86",
        })
    );
    let call = t
        .fake()
        .api_calls("/wxa/business/getuserphonenumber")
        .pop()
        .unwrap();
    assert_eq!(call.access_token, t.fake().current_token(APPID));
    // Single use: WeChat answers 40029 to a second exchange.
    phone(&code).await.assert_error(422, "invalid_code");
    phone("never-minted-phone-code")
        .await
        .assert_error(422, "invalid_code");
    for bad in [json!({}), json!({"code": ""}), json!({"code": 7})] {
        t.post_json("phone_number", bad)
            .await
            .assert_error(400, "invalid_request");
    }
    // WeChat's watermark names another app.
    t.fake().set_phone_watermark(Some("wxsomeoneelse0001"));
    let code = t.fake().mint_phone_code(APPID, "86", "13900139000");
    phone(&code).await.assert_error(422, "watermark_mismatch");
    t.fake().set_phone_watermark(None);

    // A rotated token: renewed, the code is exchanged on the retry.
    t.fake().rotate_token(APPID);
    let code = t.fake().mint_phone_code(APPID, "1", "4155550100");
    let reply = phone(&code).await;
    assert_eq!(reply.json()["countryCode"], "1", "{}", reply.text());

    for (fault, status, code) in [
        (ApiFault::Errcode(1400001), 502, "wechat_error"),
        (ApiFault::Errcode(-1), 503, "wechat_unavailable"),
        (ApiFault::NotJson, 503, "wechat_unavailable"),
        (ApiFault::Reset, 503, "wechat_unavailable"),
        (
            ApiFault::Delay(Duration::from_secs(3)),
            504,
            "wechat_timeout",
        ),
    ] {
        t.fake().push_api_fault(fault);
        let minted = t.fake().mint_phone_code(APPID, "86", "13700137000");
        phone(&minted).await.assert_error(status, code);
    }
    assert_eq!(t.requests("phone_number", "200").await, 2.0);
    assert_eq!(t.requests("phone_number", "422").await, 3.0);
}

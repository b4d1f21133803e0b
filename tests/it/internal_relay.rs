//! The relay: a backend's call to a WeChat server API goes out with the
//! app's token in place of the caller's, comes back byte for byte (JSON or
//! an image, with its Content-Type), is sent again exactly once when WeChat
//! refuses the token held (40001, 42001, 40014), never to a path that
//! needs the AppSecret, within `max_body` and `wechat.timeout`, following
//! no redirect.

use std::time::Duration;

use reqwest::Method;

use crate::common::fake_wechat::internal::{png_for, ApiFault};
use crate::common::internal_api::*;
use crate::common::*;

const CHECK: &str = "/wxa/msg_sec_check";

async fn check(t: &Internal, query: &str) -> Reply {
    let res = t
        .request(Method::POST, &format!("wechat/wxa/msg_sec_check{query}"))
        .header("content-type", "application/json")
        .body(r#"{"content":"hello","version":2}"#)
        .send()
        .await
        .unwrap();
    Reply::read(res).await
}

#[tokio::test]
async fn json_answers_come_back_unchanged_with_the_token_replaced() {
    let t = Internal::start(&with_token()).await;
    let reply = check(&t, "?scene=1&access_token=the-callers-own-token&x=%20y").await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(
        reply.content_type.as_deref(),
        Some("application/json; encoding=utf-8")
    );
    let body = reply.json();
    assert_eq!(body["errcode"], 0);
    assert_eq!(
        body["echo"],
        serde_json::json!({"content": "hello", "version": 2})
    );
    assert_eq!(body["query"], "scene=1&x=%20y");
    let calls = t.fake().api_calls(CHECK);
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0].method, "POST");
    assert_eq!(calls[0].access_token, t.fake().current_token(APPID));
    assert_eq!(
        calls[0].query.matches("access_token=").count(),
        1,
        "{}",
        calls[0].query
    );
    assert_eq!(t.requests("relay", "200").await, 1.0);

    // Methods pass as sent.
    let res = t
        .request(Method::GET, "wechat/wxa/msg_sec_check")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(t.fake().api_calls(CHECK)[1].method, "GET");
}

#[tokio::test]
async fn images_come_back_byte_for_byte() {
    let t = Internal::start(&with_token()).await;
    let sent = br#"{"scene":"a=1","page":"pages/index/index"}"#;
    let res = t
        .request(Method::POST, "wechat/wxa/getwxacodeunlimit")
        .header("content-type", "application/json")
        .body(&sent[..])
        .send()
        .await
        .unwrap();
    let reply = Reply::read(res).await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.content_type.as_deref(), Some("image/png"));
    assert_eq!(reply.body, png_for(sent));
    // The image's error answer is JSON, and passes unchanged too.
    t.fake().push_api_fault(ApiFault::Errcode(41030));
    let res = t
        .request(Method::POST, "wechat/wxa/getwxacodeunlimit")
        .body(&sent[..])
        .send()
        .await
        .unwrap();
    let reply = Reply::read(res).await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.json()["errcode"], 41030);
}

#[tokio::test]
async fn a_rotated_token_is_renewed_and_the_request_sent_again_once() {
    let t = Internal::start(&with_token()).await;
    let t1 = t.access_token().await;
    t.fake().rotate_token(APPID);
    let reply = check(&t, "").await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.json()["errcode"], 0, "{}", reply.text());
    let calls = t.fake().api_calls(CHECK);
    assert_eq!(calls.len(), 2);
    assert_eq!(calls[0].access_token.as_deref(), Some(t1.as_str()));
    assert_eq!(calls[1].access_token, t.fake().current_token(APPID));
    assert_eq!(calls[0].body, calls[1].body);
    assert_eq!(t.fake().forced(APPID), 0);
    // Later callers get the new token without another WeChat call.
    assert_eq!(
        t.access_token().await,
        t.fake().current_token(APPID).unwrap()
    );
    assert_eq!(t.fake().stable_token_calls(APPID), 2);
}

#[tokio::test]
async fn an_expired_token_is_renewed_and_the_request_sent_again_once() {
    let t = Internal::start(&with_token()).await;
    let t1 = t.access_token().await;
    t.fake().expire_token(APPID);
    let res = t
        .request(Method::POST, "wechat/wxa/getwxacodeunlimit")
        .body("{}")
        .send()
        .await
        .unwrap();
    let reply = Reply::read(res).await;
    assert_eq!(reply.content_type.as_deref(), Some("image/png"));
    let calls = t.fake().api_calls("/wxa/getwxacodeunlimit");
    assert_eq!(calls.len(), 2);
    assert_eq!(calls[0].access_token.as_deref(), Some(t1.as_str()));
    assert_ne!(calls[1].access_token.as_deref(), Some(t1.as_str()));
}

#[tokio::test]
async fn the_retry_happens_once_and_only_once() {
    let t = Internal::start(&with_token()).await;
    t.access_token().await;
    // WeChat refuses every token twice in a row (40014, then 40001).
    t.fake().push_api_fault(ApiFault::Errcode(40014));
    t.fake().push_api_fault(ApiFault::Errcode(40001));
    let reply = check(&t, "").await;
    // The second refusal comes back as WeChat gave it.
    assert_eq!(reply.status, 200);
    assert_eq!(reply.json()["errcode"], 40001, "{}", reply.text());
    assert_eq!(t.fake().api_calls(CHECK).len(), 2);
    // WeChat handed the refused token back: one force, no more.
    assert_eq!(t.fake().forced(APPID), 1);

    // Within 30 s of that force, a refusal of the new token cannot be
    // renewed: WeChat hands it back, no force is allowed, so no retry.
    t.fake().push_api_fault(ApiFault::Errcode(40001));
    let reply = check(&t, "").await;
    assert_eq!(reply.json()["errcode"], 40001);
    assert_eq!(t.fake().api_calls(CHECK).len(), 3);
    assert_eq!(t.fake().forced(APPID), 1);

    // Other errcodes are answers, not refusals of the token: no retry.
    t.fake().push_api_fault(ApiFault::Errcode(87014));
    assert_eq!(check(&t, "").await.json()["errcode"], 87014);
    assert_eq!(t.fake().api_calls(CHECK).len(), 4);
}

#[tokio::test]
async fn paths_that_need_the_secret_are_refused() {
    let t = Internal::start(&with_token()).await;
    for path in [
        "cgi-bin/token?grant_type=client_credential",
        "cgi-bin/stable_token",
        "sns/jscode2session",
        "SNS/jscode2session",
        "Cgi-Bin/Token",
        "sns",
    ] {
        let res = t
            .request(Method::GET, &format!("wechat/{path}"))
            .send()
            .await
            .unwrap();
        Reply::read(res).await.assert_error(403, "forbidden_path");
    }
    // Paths that are not plain are refused, not normalised into one.
    let addr = t.gw().internal.unwrap();
    let auth = bearer(INTERNAL_TOKEN);
    for path in [
        "wxa/../sns/jscode2session",
        "wxa/%2e%2e/sns/jscode2session",
        "sns%2Fjscode2session",
        "%73ns/jscode2session",
        "wxa//msg_sec_check",
        "./sns/jscode2session",
        "",
    ] {
        let target = format!("/v1/apps/{APPID}/wechat/{path}");
        let res = raw_request(addr, "GET", &target, &[("Authorization", &auth)]).await;
        assert_error(&res, 400, "invalid_request");
    }
    assert!(t.fake().api_calls("/sns/jscode2session").is_empty());
    assert!(t.fake().api_calls("/cgi-bin/token").is_empty());
    assert!(t.fake().api_calls("/cgi-bin/stable_token").is_empty());
}

#[tokio::test]
async fn bodies_over_max_body_are_refused() {
    let t = Internal::start(&format!("{}max_body = 2048\n", with_token())).await;
    let body = format!(r#"{{"content":"{}"}}"#, "x".repeat(2048));
    let res = t
        .request(Method::POST, "wechat/wxa/msg_sec_check")
        .body(body.clone())
        .send()
        .await
        .unwrap();
    Reply::read(res)
        .await
        .assert_error(413, "payload_too_large");
    // Chunked, with no length announced.
    let mut request = format!(
        "POST /v1/apps/{APPID}/wechat/wxa/msg_sec_check HTTP/1.1\r\nHost: x\r\n\
         Authorization: Bearer {INTERNAL_TOKEN}\r\nTransfer-Encoding: chunked\r\n\
         Connection: close\r\n\r\n"
    );
    for chunk in body.as_bytes().chunks(512) {
        request.push_str(&format!(
            "{:x}\r\n{}\r\n",
            chunk.len(),
            std::str::from_utf8(chunk).unwrap()
        ));
    }
    request.push_str("0\r\n\r\n");
    let res = RawResponse::parse(&raw(t.gw().internal.unwrap(), request.as_bytes()).await);
    assert_error(&res, 413, "payload_too_large");
    assert!(t.fake().api_calls(CHECK).is_empty());
    // Just under: relayed.
    let res = t
        .request(Method::POST, "wechat/wxa/msg_sec_check")
        .body("x".repeat(2000))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
}

#[tokio::test]
async fn timeouts_failures_and_redirects() {
    let t = Internal::with(&with_token(), |c| {
        c.edit("timeout = \"2s\"", "timeout = \"500ms\"")
    })
    .await;
    t.access_token().await;
    t.fake()
        .push_api_fault(ApiFault::Delay(Duration::from_secs(3)));
    check(&t, "").await.assert_error(504, "wechat_timeout");
    t.fake().push_api_fault(ApiFault::Reset);
    check(&t, "").await.assert_error(503, "wechat_unavailable");
    // WeChat's own HTTP errors are answers: they pass unchanged.
    t.fake().push_api_fault(ApiFault::Http502Html);
    let reply = check(&t, "").await;
    assert_eq!(reply.status, 502);
    assert_eq!(reply.content_type.as_deref(), Some("text/html"));
    assert!(reply.text().contains("502 Bad Gateway"));
    // A redirect is not followed: it comes back as it is.
    t.fake().push_api_fault(ApiFault::Redirect);
    let reply = check(&t, "").await;
    assert_eq!(reply.status, 302);
    assert_eq!(t.fake().api_calls(CHECK).len(), 4);
}

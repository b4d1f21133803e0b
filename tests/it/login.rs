//! `POST /auth/login`: the answer and the token it carries, what reaches
//! WeChat, what never does, one WeChat call per code, app selection, the
//! session_key kept on the server, and the per-client login rate limit.

use std::collections::HashMap;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde_json::json;

use crate::common::fake_wechat::{FakeWeChat, Fault};
use crate::common::login_flow::*;
use crate::common::upstream::Upstream;
use crate::common::*;

/// Decodes a raw query string as the fake (and WeChat) reads it.
fn query_pairs(query: &str) -> Vec<(String, String)> {
    fn decode(s: &str) -> String {
        let bytes = s.as_bytes();
        let mut out = Vec::new();
        let mut i = 0;
        while i < bytes.len() {
            match bytes[i] {
                b'+' => out.push(b' '),
                b'%' => {
                    let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap();
                    out.push(u8::from_str_radix(hex, 16).unwrap());
                    i += 2;
                }
                b => out.push(b),
            }
            i += 1;
        }
        String::from_utf8(out).unwrap()
    }
    query
        .split('&')
        .map(|pair| {
            let (name, value) = pair.split_once('=').expect("name=value");
            (decode(name), decode(value))
        })
        .collect()
}

#[tokio::test]
async fn success_answers_a_bearer_token_with_the_configured_ttl() {
    let s = Setup::with(|c| set(&c, "[token]", "ttl = \"1h\"")).await;
    let code = s.fake.mint_code(APPID, "o-alice");
    let before = wxgate::auth::token::now();
    let answer = s.login(&code).await;
    let after = wxgate::auth::token::now();
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(answer.header("content-type"), Some("application/json"));
    assert_eq!(answer.header("cache-control"), Some("no-store"));
    let body = answer.json();
    let fields: Vec<&String> = body.as_object().unwrap().keys().collect();
    assert_eq!(
        fields.len(),
        3,
        "exactly access_token, token_type, expires_in: {body}"
    );
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 3600);

    let (header, claims) = decode(&answer.token());
    assert_eq!(header["alg"], "HS256");
    assert_eq!(header["typ"], "JWT");
    assert_eq!(header["kid"], "k1");
    assert_eq!(claims["iss"], "wxgate");
    assert_eq!(claims["sub"], "o-alice");
    assert_eq!(claims["aud"], APPID);
    let iat = claims["iat"].as_u64().expect("numeric iat");
    let exp = claims["exp"].as_u64().expect("numeric exp");
    assert!(
        (before..=after).contains(&iat),
        "iat {iat} not in [{before}, {after}]"
    );
    assert_eq!(exp - iat, 3600);
    let jti = claims["jti"].as_str().expect("jti");
    let jti_bytes = URL_SAFE_NO_PAD.decode(jti).expect("base64url jti");
    assert!(jti_bytes.len() >= 16, "jti has {} bytes", jti_bytes.len());
    assert!(claims.get("unionid").is_none(), "no unionid: {claims}");

    let session_key = s.fake.session_key(APPID, "o-alice").unwrap();
    for text in [&answer.body, &answer.everything()] {
        assert!(!text.contains("session_key"), "{text}");
        assert!(!text.contains(&session_key), "{text}");
    }
}

#[tokio::test]
async fn each_login_gets_a_fresh_jti() {
    let s = Setup::start().await;
    let a = s.login_as("o-alice").await;
    let b = s.login_as("o-alice").await;
    assert_ne!(decode(&a).1["jti"], decode(&b).1["jti"]);
}

#[tokio::test]
async fn the_token_carries_the_unionid_and_works_upstream() {
    let s = Setup::start().await;
    s.fake.set_unionid(APPID, "o-bob", Some("u-bob"));
    let token = s.login_as("o-bob").await;
    assert_eq!(decode(&token).1["unionid"], "u-bob");

    let res = get(&s.gw, "/api/profile", Some(&token)).await;
    assert_eq!(res.status, 200, "{}", res.body);
    let got = s.up.last().expect("the upstream got the request");
    assert_eq!(got.header("x-wx-openid"), Some("o-bob"));
    assert_eq!(got.header("x-wx-unionid"), Some("u-bob"));
    assert_eq!(got.header("x-wx-appid"), Some(APPID));
}

#[tokio::test]
async fn without_a_unionid_none_is_injected() {
    let s = Setup::start().await;
    let token = s.login_as("o-carol").await;
    let res = get(&s.gw, "/api/profile", Some(&token)).await;
    assert_eq!(res.status, 200, "{}", res.body);
    let got = s.up.last().unwrap();
    assert_eq!(got.header("x-wx-openid"), Some("o-carol"));
    assert_eq!(got.header("x-wx-unionid"), None);
}

#[tokio::test]
async fn wechat_gets_the_four_parameters_in_the_query() {
    let s = Setup::start().await;
    let code = s.fake.mint_code(APPID, "o-alice");
    assert_eq!(s.login(&code).await.status, 200);
    let query = s.fake.last_query().expect("WeChat was called");
    let pairs = query_pairs(&query);
    let expected = [
        ("appid", APPID),
        ("secret", APP_SECRET),
        ("js_code", code.as_str()),
        ("grant_type", "authorization_code"),
    ];
    assert_eq!(pairs.len(), 4, "{query}");
    let got: HashMap<_, _> = pairs.into_iter().collect();
    for (name, value) in expected {
        assert_eq!(got.get(name).map(String::as_str), Some(value), "{query}");
    }
}

#[tokio::test]
async fn query_values_are_percent_encoded() {
    // A secret and a code with the characters a query gives meaning to.
    let secret = "p&ss=w+rd/with space%41#frag?x";
    let fake = FakeWeChat::start().await;
    fake.add_app(APPID, secret);
    let up = Upstream::start().await;
    let config = base_config(&up.url(), &fake.base_url()).edit(
        &format!("secret = \"{APP_SECRET}\""),
        &format!("secret = \"{secret}\""),
    );
    let gw = TestGateway::start(&config).await;

    let code = fake.mint_code(APPID, "o-alice");
    let answer = login(&gw, json!({ "code": code })).await;
    assert_eq!(
        answer.status, 200,
        "the fake decoded the right secret: {}",
        answer.body
    );
    let query = fake.last_query().unwrap();
    for raw in ["&ss", "=w", "+rd", "with space", "%41#", "#", "?"] {
        let (_, after_secret) = query.split_once("secret=").unwrap();
        let value = after_secret.split('&').next().unwrap();
        assert!(!value.contains(raw), "{raw:?} not encoded in {query}");
    }

    // `+`, `/` and `=` are valid in a code and must arrive intact.
    let answer = login(&gw, json!({ "code": "ab+cd/ef==" })).await;
    answer.assert_error(401, "invalid_code");
    let pairs: HashMap<_, _> = query_pairs(&fake.last_query().unwrap())
        .into_iter()
        .collect();
    assert_eq!(pairs["js_code"], "ab+cd/ef==");
    assert_eq!(fake.calls_for_code("ab+cd/ef=="), 1);
}

#[tokio::test]
async fn a_content_type_with_parameters_is_json() {
    let s = Setup::start().await;
    let code = s.fake.mint_code(APPID, "o-alice");
    let res = client()
        .post(s.gw.url("/auth/login"))
        .header("content-type", "Application/JSON; charset=utf-8")
        .body(json!({ "code": code }).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
}

#[tokio::test]
async fn bad_bodies_never_reach_wechat() {
    let s = Setup::start().await;
    // A real code, so that a body let through would reach WeChat.
    let code = s.fake.mint_code(APPID, "o-alice");
    let json_bodies = [
        "not json".to_owned(),
        "{\"code\":".to_owned(),
        "[]".to_owned(),
        "{}".to_owned(),
        // serde reads a struct from a sequence: a body that is not a JSON
        // object must not log in as its first element.
        json!([code]).to_string(),
        json!([code, APPID]).to_string(),
        json!(code).to_string(),
        "null".to_owned(),
        json!({ "cod": code }).to_string(),
        json!({ "code": "" }).to_string(),
        json!({ "code": null }).to_string(),
        json!({ "code": 12345 }).to_string(),
        json!({ "code": [code] }).to_string(),
        json!({ "code": format!("{code} ") }).to_string(),
        json!({ "code": format!(" {code}") }).to_string(),
        json!({ "code": "a b" }).to_string(),
        json!({ "code": format!("{code}\r\n") }).to_string(),
        json!({ "code": format!("{code}\nX-Injected: 1") }).to_string(),
        json!({ "code": format!("{code}&secret=x") }).to_string(),
        json!({ "code": "x".repeat(200) }).to_string(),
        String::new(),
    ];
    for body in &json_bodies {
        let res = s.post_login_json(body.clone()).await;
        let answer = Answer::read(res).await;
        assert_eq!(
            (answer.status, answer.error().as_str()),
            (400, "invalid_request"),
            "body {body:?}: {}",
            answer.body
        );
    }

    let good_body = json!({ "code": code }).to_string();
    for content_type in [
        None,
        Some("text/plain"),
        Some("application/x-www-form-urlencoded"),
        Some("application/jsonp"),
        Some("multipart/form-data; boundary=x"),
    ] {
        let mut req = client()
            .post(s.gw.url("/auth/login"))
            .body(good_body.clone());
        if let Some(ct) = content_type {
            req = req.header("content-type", ct);
        }
        let answer = Answer::read(req.send().await.unwrap()).await;
        assert_eq!(
            (answer.status, answer.error().as_str()),
            (400, "invalid_request"),
            "content-type {content_type:?}: {}",
            answer.body
        );
    }
    assert_eq!(s.fake.calls(), 0, "WeChat was called");

    // The same code in a good request goes through: the checks above were
    // about the requests, not the code.
    assert_eq!(s.login(&code).await.status, 200);
    assert_eq!(s.fake.calls(), 1);
}

#[tokio::test]
async fn a_declared_oversized_body_is_413() {
    let s = Setup::start().await;
    let code = s.fake.mint_code(APPID, "o-alice");
    let body = json!({ "code": code, "pad": "x".repeat(5000) }).to_string();
    let res = s.post_login_json(body).await;
    Answer::read(res)
        .await
        .assert_error(413, "payload_too_large");
    assert_eq!(s.fake.calls(), 0);
}

#[tokio::test]
async fn the_limit_is_4_kib_exactly() {
    let s = Setup::start().await;
    let padded = |code: &str, total: usize| {
        let empty = json!({ "code": code, "pad": "" }).to_string();
        json!({ "code": code, "pad": "x".repeat(total - empty.len()) }).to_string()
    };
    let code = s.fake.mint_code(APPID, "o-alice");
    let body = padded(&code, 4097);
    assert_eq!(body.len(), 4097);
    let res = s.post_login_json(body).await;
    Answer::read(res)
        .await
        .assert_error(413, "payload_too_large");
    assert_eq!(s.fake.calls(), 0);

    let body = padded(&code, 4096);
    assert_eq!(body.len(), 4096);
    let res = s.post_login_json(body).await;
    let answer = Answer::read(res).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
}

#[tokio::test]
async fn a_chunked_oversized_body_is_413() {
    let s = Setup::start().await;
    let code = s.fake.mint_code(APPID, "o-alice");
    let body = json!({ "code": code, "pad": "x".repeat(5000) }).to_string();
    let mut request = b"POST /auth/login HTTP/1.1\r\nHost: gw.test\r\n\
        Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\
        Connection: close\r\n\r\n"
        .to_vec();
    for chunk in body.as_bytes().chunks(1000) {
        request.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
        request.extend_from_slice(chunk);
        request.extend_from_slice(b"\r\n");
    }
    request.extend_from_slice(b"0\r\n\r\n");
    let response = raw(s.gw.addr, &request).await;
    assert_eq!(status_of(&response), 413, "{response}");
    assert!(response.contains("\"payload_too_large\""), "{response}");
    assert_eq!(s.fake.calls(), 0);

    // A small chunked body is fine.
    let body = json!({ "code": code }).to_string();
    let mut request = b"POST /auth/login HTTP/1.1\r\nHost: gw.test\r\n\
        Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\
        Connection: close\r\n\r\n"
        .to_vec();
    request.extend_from_slice(format!("{:x}\r\n{body}\r\n0\r\n\r\n", body.len()).as_bytes());
    let response = raw(s.gw.addr, &request).await;
    assert_eq!(status_of(&response), 200, "{response}");
}

#[tokio::test]
async fn get_on_login_is_405() {
    let s = Setup::start().await;
    let answer = get(&s.gw, "/auth/login", None).await;
    answer.assert_error(405, "method_not_allowed");
    assert_eq!(answer.header("allow"), Some("POST"));
    assert_eq!(s.fake.calls(), 0);
}

#[tokio::test]
async fn a_repeated_code_gets_the_same_answer_from_one_wechat_call() {
    let s = Setup::start().await;
    let code = s.fake.mint_code(APPID, "o-alice");
    let first = s.login(&code).await;
    let second = s.login(&code).await;
    assert_eq!(first.status, 200, "{}", first.body);
    assert_eq!(second.status, 200, "{}", second.body);
    assert_eq!(first.token(), second.token());
    assert_eq!(first.body, second.body);
    assert_eq!(s.fake.calls_for_code(&code), 1);
    assert_eq!(s.fake.calls(), 1);
}

#[tokio::test]
async fn a_replayed_code_gets_the_same_token_and_the_time_actually_left() {
    let s = Setup::with(|c| set(&c, "[token]", "ttl = \"1h\"")).await;
    let code = s.fake.mint_code(APPID, "o-alice");
    let started = std::time::Instant::now();
    let first = s.login(&code).await;
    assert_eq!(first.status, 200, "{}", first.body);
    assert_eq!(
        first.json()["expires_in"],
        3600,
        "a fresh token has its whole ttl"
    );
    let second = s.login(&code).await;
    let elapsed = started.elapsed().as_secs() + 1;
    assert_eq!(first.token(), second.token());
    let left = second.json()["expires_in"].as_u64().unwrap();
    assert!(
        (3600 - elapsed..=3600).contains(&left),
        "{left} after {elapsed}s"
    );
    assert_eq!(s.fake.calls_for_code(&code), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn twenty_concurrent_identical_logins_make_one_wechat_call() {
    let s = Setup::start().await;
    let code = s.fake.mint_code(APPID, "o-alice");
    // WeChat holds the first call long enough for every request to arrive.
    s.fake
        .push_fault(Fault::Delay(std::time::Duration::from_millis(1000)));
    let url = s.gw.url("/auth/login");
    let body = json!({ "code": code }).to_string();
    let mut tasks = Vec::new();
    for _ in 0..20 {
        let (url, body) = (url.clone(), body.clone());
        tasks.push(tokio::spawn(async move {
            let res = client()
                .post(url)
                .header("content-type", "application/json")
                .body(body)
                .send()
                .await
                .unwrap();
            Answer::read(res).await
        }));
    }
    let mut answers = Vec::new();
    for task in tasks {
        answers.push(task.await.unwrap());
    }
    for answer in &answers {
        assert_eq!(answer.status, 200, "{}", answer.body);
        assert_eq!(answer.body, answers[0].body);
    }
    assert_eq!(s.fake.calls(), 1);
    assert_eq!(s.fake.calls_for_code(&code), 1);
}

async fn two_apps() -> Setup {
    let s = Setup::with(|c| with_app(&c, APPID2, APP_SECRET2)).await;
    s.fake.add_app(APPID2, APP_SECRET2);
    s
}

async fn login_with(s: &Setup, body: serde_json::Value, referer: Option<&str>) -> Answer {
    let mut req = client()
        .post(s.gw.url("/auth/login"))
        .header("content-type", "application/json")
        .body(body.to_string());
    if let Some(referer) = referer {
        req = req.header("referer", referer);
    }
    Answer::read(req.send().await.unwrap()).await
}

fn referer(appid: &str) -> String {
    format!("https://servicewechat.com/{appid}/0/page-frame.html")
}

fn queried_appid(fake: &FakeWeChat) -> String {
    let pairs: HashMap<_, _> = query_pairs(&fake.last_query().unwrap())
        .into_iter()
        .collect();
    pairs["appid"].clone()
}

#[tokio::test]
async fn appid_in_the_body_selects_the_app() {
    let s = two_apps().await;
    for appid in [APPID, APPID2] {
        let code = s.fake.mint_code(appid, "o-alice");
        let answer = login_with(&s, json!({ "code": code, "appid": appid }), None).await;
        assert_eq!(answer.status, 200, "{appid}: {}", answer.body);
        assert_eq!(decode(&answer.token()).1["aud"], appid);
        assert_eq!(queried_appid(&s.fake), appid);
    }
    // The second app's secret went with the second app's appid.
    let pairs: HashMap<_, _> = query_pairs(&s.fake.last_query().unwrap())
        .into_iter()
        .collect();
    assert_eq!(pairs["secret"], APP_SECRET2);
}

#[tokio::test]
async fn the_wechat_referer_selects_the_app() {
    let s = two_apps().await;
    let code = s.fake.mint_code(APPID2, "o-alice");
    let answer = login_with(&s, json!({ "code": code }), Some(&referer(APPID2))).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(decode(&answer.token()).1["aud"], APPID2);
    assert_eq!(queried_appid(&s.fake), APPID2);

    let code = s.fake.mint_code(APPID2, "o-alice");
    let devtools = format!("https://servicewechat.com/{APPID2}/devtools/page-frame.html");
    let answer = login_with(&s, json!({ "code": code }), Some(&devtools)).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
}

#[tokio::test]
async fn appid_in_the_body_wins_over_the_referer() {
    let s = two_apps().await;
    let code = s.fake.mint_code(APPID, "o-alice");
    let answer = login_with(
        &s,
        json!({ "code": code, "appid": APPID }),
        Some(&referer(APPID2)),
    )
    .await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(decode(&answer.token()).1["aud"], APPID);
    assert_eq!(queried_appid(&s.fake), APPID);
}

#[tokio::test]
async fn with_two_apps_and_no_selector_it_is_400() {
    let s = two_apps().await;
    let code = s.fake.mint_code(APPID, "o-alice");
    for referer in [
        None,
        Some("https://example.com/".to_owned()),
        Some(format!(
            "http://servicewechat.com/{APPID}/0/page-frame.html"
        )),
        Some(format!(
            "https://servicewechat.com.evil/{APPID}/0/page-frame.html"
        )),
        Some("https://servicewechat.com/wxunknown000000/0/page-frame.html".to_owned()),
    ] {
        let answer = login_with(&s, json!({ "code": code }), referer.as_deref()).await;
        assert_eq!(
            (answer.status, answer.error().as_str()),
            (400, "invalid_request"),
            "referer {referer:?}: {}",
            answer.body
        );
    }
    assert_eq!(s.fake.calls(), 0);
}

#[tokio::test]
async fn an_unknown_appid_is_400() {
    let s = two_apps().await;
    let code = s.fake.mint_code(APPID, "o-alice");
    let answer = login_with(
        &s,
        json!({ "code": code, "appid": "wxunknown0000000" }),
        Some(&referer(APPID)),
    )
    .await;
    answer.assert_error(400, "invalid_request");

    // With one app too: an appid that is not that app's is refused.
    let one = Setup::start().await;
    let code = one.fake.mint_code(APPID, "o-alice");
    let answer = login(&one.gw, json!({ "code": code, "appid": APPID2 })).await;
    answer.assert_error(400, "invalid_request");
    let answer = login(&one.gw, json!({ "code": code, "appid": 7 })).await;
    answer.assert_error(400, "invalid_request");
    assert_eq!(s.fake.calls() + one.fake.calls(), 0);
}

#[tokio::test]
async fn a_new_login_replaces_the_stored_session_key() {
    let s = Setup::start().await;
    let store = s.gw.gw.store();
    assert!(store.session(APPID, "o-alice").await.unwrap().is_none());

    s.login_as("o-alice").await;
    let first = s.fake.session_key(APPID, "o-alice").unwrap();
    let stored = store
        .session(APPID, "o-alice")
        .await
        .unwrap()
        .expect("stored");
    assert_eq!(stored.session_key.expose(), first);

    let rotated = s.fake.rotate_session_key(APPID, "o-alice");
    assert_ne!(rotated, first);
    s.login_as("o-alice").await;
    let stored = store
        .session(APPID, "o-alice")
        .await
        .unwrap()
        .expect("stored");
    assert_eq!(stored.session_key.expose(), rotated);

    // Per app and user: another user's login leaves it alone.
    s.login_as("o-bob").await;
    let stored = store.session(APPID, "o-alice").await.unwrap().unwrap();
    assert_eq!(stored.session_key.expose(), rotated);
}

async fn login_from(s: &Setup, xff: Option<&str>) -> Answer {
    let code = s.fake.mint_code(APPID, "o-alice");
    let mut req = client()
        .post(s.gw.url("/auth/login"))
        .header("content-type", "application/json")
        .body(json!({ "code": code }).to_string());
    if let Some(xff) = xff {
        req = req.header("x-forwarded-for", xff);
    }
    Answer::read(req.send().await.unwrap()).await
}

fn assert_rate_limited(answer: &Answer) {
    answer.assert_error(429, "rate_limited");
    let retry: u64 = answer
        .header("retry-after")
        .expect("Retry-After")
        .parse()
        .expect("delay-seconds");
    assert!((1..=60).contains(&retry), "Retry-After {retry}");
}

#[tokio::test]
async fn the_fourth_login_in_a_minute_is_429() {
    let s = Setup::with(|c| rate_limit(&c, "3/min")).await;
    for i in 0..3 {
        let answer = login_from(&s, None).await;
        assert_eq!(answer.status, 200, "login {i}: {}", answer.body);
    }
    assert_rate_limited(&login_from(&s, None).await);
    assert_eq!(s.fake.calls(), 3, "a refused login does not reach WeChat");
}

#[tokio::test]
async fn a_reload_keeps_the_budgets_unless_the_limit_changes() {
    let s = Setup::with(|c| rate_limit(&c, "3/min")).await;
    let config_with = |rate| rate_limit(&base_config(&s.up.url(), &s.fake.base_url()), rate);
    for i in 0..3 {
        assert_eq!(login_from(&s, None).await.status, 200, "login {i}");
    }
    let parse = |text: &str| {
        wxgate::Config::parse_with_env(
            text,
            std::path::Path::new("t.toml"),
            Some(Default::default()),
        )
        .unwrap()
    };
    s.gw.gw.install(parse(&config_with("3/min"))).unwrap();
    assert_rate_limited(&login_from(&s, None).await);
    s.gw.gw.install(parse(&config_with("5/min"))).unwrap();
    assert_eq!(
        login_from(&s, None).await.status,
        200,
        "a new limit starts afresh"
    );
}

#[tokio::test]
async fn x_forwarded_for_from_an_untrusted_peer_does_not_dodge_the_limit() {
    let s = Setup::with(|c| rate_limit(&c, "3/min")).await;
    for i in 0..3 {
        let xff = format!("198.51.100.{i}");
        let answer = login_from(&s, Some(&xff)).await;
        assert_eq!(answer.status, 200, "login {i}: {}", answer.body);
    }
    assert_rate_limited(&login_from(&s, Some("198.51.100.200")).await);
    assert_rate_limited(&login_from(&s, Some("203.0.113.7, 198.51.100.201")).await);
}

#[tokio::test]
async fn behind_a_trusted_proxy_each_forwarded_client_has_its_own_budget() {
    let s = Setup::with(|c| {
        let c = rate_limit(&c, "3/min");
        set(&c, "[server]", "trusted_proxies = [\"127.0.0.1\"]")
    })
    .await;
    let (a, b) = ("203.0.113.1", "203.0.113.2");
    for i in 0..3 {
        let answer = login_from(&s, Some(a)).await;
        assert_eq!(answer.status, 200, "client a, login {i}: {}", answer.body);
    }
    assert_rate_limited(&login_from(&s, Some(a)).await);
    // A forged entry on the left changes nothing: the rightmost untrusted counts.
    assert_rate_limited(&login_from(&s, Some(&format!("198.51.100.9, {a}"))).await);
    for i in 0..3 {
        let answer = login_from(&s, Some(b)).await;
        assert_eq!(answer.status, 200, "client b, login {i}: {}", answer.body);
    }
    assert_rate_limited(&login_from(&s, Some(b)).await);
    // The proxy itself (no X-Forwarded-For) is one more client.
    assert_eq!(login_from(&s, None).await.status, 200);
}

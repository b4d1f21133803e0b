//! The auth check on proxied routes: `required`, `optional` and `none`, the
//! 401 answers and their challenges, custom token headers, `forward_token`
//! and per-route `apps`.

use std::time::Duration;

use crate::common::upstream::{Received, Upstream};
use crate::common::*;
use wxgate::{Config, Gateway};

const OTHER_APPID: &str = "wxtest0000000002";

fn assert_401(res: &RawResponse, code: &str, presented: bool) {
    assert_eq!(res.status, 401, "{res:?}");
    assert_eq!(res.header("content-type"), Some("application/json"));
    assert_eq!(res.json()["error"], code, "{res:?}");
    let challenge = res.header("www-authenticate").expect("a challenge");
    if presented {
        assert!(
            challenge.starts_with("Bearer realm=\"wxgate\""),
            "{challenge}"
        );
        assert!(challenge.contains("error=\"invalid_token\""), "{challenge}");
        assert!(challenge.contains("error_description="), "{challenge}");
    } else {
        assert_eq!(challenge, "Bearer realm=\"wxgate\"");
    }
}

fn identity_headers(got: &Received) -> Vec<(String, String)> {
    got.headers
        .iter()
        .filter(|(n, _)| n.starts_with("x-wx-") || n.starts_with("x_wx_"))
        .cloned()
        .collect()
}

/// A gateway whose key `k1` has another secret.
fn foreign_gateway() -> Gateway {
    let toml = base_config(&nowhere(), &nowhere())
        .edit(JWT_SECRET, "another-signing-key-0123456789-abcdefgh");
    let config = Config::parse_with_env(
        &toml,
        std::path::Path::new("other.toml"),
        Some(Default::default()),
    )
    .unwrap();
    Gateway::new(config).unwrap()
}

#[tokio::test]
async fn required_route_without_token_is_401_missing_token() {
    let up = Upstream::start().await;
    let gw = gateway_with(&up, "").await;
    for headers in [
        vec![],
        vec![("Authorization", "Bearer")],
        vec![("Authorization", "Bearer   ")],
        // Not a bearer token: not a wxgate token at all.
        vec![("Authorization", "Basic dXNlcjpwYXNz")],
    ] {
        let res = raw_request(gw.addr, "GET", "/api/x", &headers).await;
        assert_401(&res, "missing_token", false);
    }
    assert!(up.requests().is_empty(), "{:#?}", up.requests());
}

#[tokio::test]
async fn bad_or_expired_tokens_are_refused_with_an_invalid_token_challenge() {
    let up = Upstream::start().await;
    let gw = gateway_with(&up, "").await;
    let good = token(&gw.gw, "o-alice");

    let mut tampered = good.clone();
    tampered.pop();
    tampered.push(if good.ends_with('A') { 'B' } else { 'A' });
    for bad in ["garbage", "a.b.c", tampered.as_str()] {
        let auth = bearer(bad);
        let res = raw_request(gw.addr, "GET", "/api/x", &[("Authorization", &auth)]).await;
        assert_401(&res, "invalid_token", true);
    }

    // Issued two hours ago, valid for ten minutes: long expired.
    let past = wxgate::auth::token::now() - 7200;
    let (expired, _) = gw
        .gw
        .snapshot()
        .keys
        .mint("o-alice", APPID, None, Duration::from_secs(600), past)
        .unwrap();
    let auth = bearer(&expired);
    let res = raw_request(gw.addr, "GET", "/api/x", &[("Authorization", &auth)]).await;
    assert_401(&res, "token_expired", true);

    // Two tokens at once are refused rather than guessed between.
    let auth = bearer(&good);
    let res = raw_request(
        gw.addr,
        "GET",
        "/api/x",
        &[("Authorization", &auth), ("Authorization", &auth)],
    )
    .await;
    assert_401(&res, "invalid_token", true);

    assert!(up.requests().is_empty(), "{:#?}", up.requests());

    // The untampered token does pass, so the refusals above were about the token.
    let res = raw_request(gw.addr, "GET", "/api/x", &[("Authorization", &auth)]).await;
    assert_eq!(res.status, 200, "{res:?}");
    assert_eq!(
        up.next_request().await.header("x-wx-openid"),
        Some("o-alice")
    );
}

#[tokio::test]
async fn a_token_signed_with_another_key_is_refused() {
    let up = Upstream::start().await;
    let gw = gateway_with(&up, "").await;
    let forged = token(&foreign_gateway(), "o-mallory");
    let auth = bearer(&forged);
    let res = raw_request(gw.addr, "GET", "/api/x", &[("Authorization", &auth)]).await;
    assert_401(&res, "invalid_token", true);
    assert!(up.requests().is_empty(), "{:#?}", up.requests());
}

/// `Authorization: <token>` without its scheme is a token sent wrongly, not
/// no token: the answer says what is wrong, on required and optional routes.
/// Another scheme (Basic) is someone else's credential: no wxgate token.
#[tokio::test]
async fn a_token_without_the_bearer_scheme_is_invalid_token_saying_so() {
    let up = Upstream::start().await;
    let extra = format!(
        "[[routes]]\npath = \"/opt\"\nupstream = \"{}\"\nauth = \"optional\"\n",
        up.url()
    );
    let gw = gateway_with(&up, &extra).await;
    let good = token(&gw.gw, "o-alice");
    for path in ["/api/x", "/opt/x", "/auth/session"] {
        let res = raw_request(gw.addr, "GET", path, &[("Authorization", &good)]).await;
        assert_401(&res, "invalid_token", true);
        let challenge = res.header("www-authenticate").unwrap();
        assert!(
            challenge.contains("Authorization must use the Bearer scheme"),
            "{path}: {challenge}"
        );
    }
    assert!(up.requests().is_empty(), "{:#?}", up.requests());
    let res = raw_request(
        gw.addr,
        "GET",
        "/opt/y",
        &[("Authorization", "Basic dXNlcjpwYXNz")],
    )
    .await;
    assert_eq!(res.status, 200, "{res:?}");
}

#[tokio::test]
async fn optional_route_forwards_anonymous_requests_without_identity() {
    let up = Upstream::start().await;
    let extra = format!(
        "[[routes]]\npath = \"/opt\"\nupstream = \"{}\"\nauth = \"optional\"\n",
        up.url()
    );
    let gw = gateway_with(&up, &extra).await;

    // No token: forwarded, and a client's own identity headers do not survive.
    let res = raw_request(
        gw.addr,
        "GET",
        "/opt/a",
        &[("X-WX-OpenID", "o-spoof"), ("X-WX-AppID", APPID)],
    )
    .await;
    assert_eq!(res.status, 200, "{res:?}");
    let got = up.next_request().await;
    assert_eq!(got.target, "/opt/a");
    assert!(identity_headers(&got).is_empty(), "{:?}", got.headers);

    // A bad token is not silently treated as anonymous.
    let res = raw_request(
        gw.addr,
        "GET",
        "/opt/b",
        &[("Authorization", "Bearer nope")],
    )
    .await;
    assert_401(&res, "invalid_token", true);

    // A valid token: identity injected.
    let t = token_for(&gw.gw, "o-bob", APPID, Some("u-bob"));
    let auth = bearer(&t);
    let res = raw_request(gw.addr, "GET", "/opt/c", &[("Authorization", &auth)]).await;
    assert_eq!(res.status, 200, "{res:?}");
    let got = up.next_request().await;
    assert_eq!(got.target, "/opt/c");
    assert_eq!(got.header_all("x-wx-openid"), ["o-bob"]);
    assert_eq!(got.header_all("x-wx-appid"), [APPID]);
    assert_eq!(got.header_all("x-wx-unionid"), ["u-bob"]);
    assert_eq!(got.header("authorization"), None);
    assert_eq!(up.requests().len(), 2);
}

#[tokio::test]
async fn none_route_ignores_any_token_and_strips_identity() {
    let up = Upstream::start().await;
    let gw = gateway_with(&up, "").await;
    let good = bearer(&token(&gw.gw, "o-alice"));
    let cases: Vec<Vec<(&str, &str)>> = vec![
        vec![
            ("Authorization", "Bearer garbage"),
            ("X-WX-OpenID", "o-spoof"),
        ],
        vec![("Authorization", &good), ("X-WX-OpenID", "o-spoof")],
        vec![("Authorization", "Bearer a"), ("Authorization", "Bearer b")],
        vec![("Authorization", "Bearer \u{80}\u{ff}")],
    ];
    for headers in cases {
        let res = raw_request(gw.addr, "GET", "/public/x", &headers).await;
        assert_eq!(res.status, 200, "{headers:?}: {res:?}");
        let got = up.next_request().await;
        // Not even a valid token turns into identity on an auth = "none" route.
        assert!(identity_headers(&got).is_empty(), "{:?}", got.headers);
        assert_eq!(got.header("authorization"), None, "{:?}", got.headers);
    }
}

#[tokio::test]
async fn a_custom_token_header_carries_a_bare_token_and_is_not_forwarded() {
    let up = Upstream::start().await;
    let toml =
        base_config(&up.url(), &nowhere()).edit("[auth]\n", "[auth]\ntoken_header = \"X-Token\"\n");
    assert!(toml.contains("token_header"));
    let gw = TestGateway::start(&toml).await;
    let t = token(&gw.gw, "o-carol");

    let res = raw_request(gw.addr, "GET", "/api/x", &[("x-token", &t)]).await;
    assert_eq!(res.status, 200, "{res:?}");
    let got = up.next_request().await;
    assert_eq!(got.header_all("x-wx-openid"), ["o-carol"]);
    assert_eq!(got.header("x-token"), None, "{:?}", got.headers);

    // The Bearer scheme in Authorization is not the configured header.
    let auth = bearer(&t);
    let res = raw_request(gw.addr, "GET", "/api/x", &[("Authorization", &auth)]).await;
    assert_401(&res, "missing_token", false);
    // And a bad value in the custom header is a refused token.
    let res = raw_request(gw.addr, "GET", "/api/x", &[("X-Token", "garbage")]).await;
    assert_401(&res, "invalid_token", true);
    assert_eq!(up.requests().len(), 1);
}

#[tokio::test]
async fn forward_token_passes_the_authorization_header_upstream() {
    let up = Upstream::start().await;
    let extra = format!(
        "[[routes]]\npath = \"/fwd\"\nupstream = \"{}\"\nauth = \"required\"\nforward_token = true\n",
        up.url()
    );
    let gw = gateway_with(&up, &extra).await;
    let auth = bearer(&token(&gw.gw, "o-dave"));

    let res = raw_request(gw.addr, "GET", "/fwd/x", &[("Authorization", &auth)]).await;
    assert_eq!(res.status, 200, "{res:?}");
    let got = up.next_request().await;
    assert_eq!(got.header_all("authorization"), [auth.as_str()]);
    assert_eq!(got.header_all("x-wx-openid"), ["o-dave"]);

    // The default is not to forward it.
    let res = raw_request(gw.addr, "GET", "/api/x", &[("Authorization", &auth)]).await;
    assert_eq!(res.status, 200, "{res:?}");
    assert_eq!(up.next_request().await.header("authorization"), None);
}

#[tokio::test]
async fn route_apps_refuse_tokens_for_other_configured_apps() {
    let up = Upstream::start().await;
    let extra = format!(
        r#"
[[routes]]
path = "/only1"
upstream = "{}"
auth = "required"
apps = ["{APPID}"]

[[apps]]
appid = "{OTHER_APPID}"
secret = "second-app-secret-abcdef0123456"
"#,
        up.url()
    );
    let gw = gateway_with(&up, &extra).await;
    let other = bearer(&token_for(&gw.gw, "o-erin", OTHER_APPID, None));
    let mine = bearer(&token_for(&gw.gw, "o-erin", APPID, None));

    let res = raw_request(gw.addr, "GET", "/only1/x", &[("Authorization", &other)]).await;
    assert_401(&res, "invalid_token", true);
    assert!(up.requests().is_empty(), "{:#?}", up.requests());

    let res = raw_request(gw.addr, "GET", "/only1/x", &[("Authorization", &mine)]).await;
    assert_eq!(res.status, 200, "{res:?}");
    let got = up.next_request().await;
    assert_eq!(got.header_all("x-wx-appid"), [APPID]);

    // Where the route does not restrict apps, the other app's token is good.
    let res = raw_request(gw.addr, "GET", "/api/x", &[("Authorization", &other)]).await;
    assert_eq!(res.status, 200, "{res:?}");
    let got = up.next_request().await;
    assert_eq!(got.header_all("x-wx-appid"), [OTHER_APPID]);
    assert_eq!(got.header_all("x-wx-openid"), ["o-erin"]);
}

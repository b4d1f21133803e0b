//! The forward-auth endpoint (`auth.verify_path`) on a real gateway: the
//! answers for each route auth mode, routing of the described request, the
//! trust rule for the headers that describe it, and that nothing is ever
//! forwarded.

use crate::common::upstream::Upstream;
use crate::common::*;

/// The base config with the test's peer (127.0.0.1) trusted or not, plus
/// `extra` TOML.
async fn gateway(up: &Upstream, trusted: bool, extra: &str) -> TestGateway {
    let mut toml = base_config(&up.url(), &nowhere());
    if trusted {
        toml = toml.edit(
            "[server]\n",
            "[server]\ntrusted_proxies = [\"127.0.0.1\"]\n",
        );
    }
    TestGateway::start(&format!("{toml}\n{extra}")).await
}

/// `GET /auth/verify` as nginx sends it: the original method and URI in
/// `X-Original-*`, the client's headers after them.
async fn nginx_check(
    gw: &TestGateway,
    method: &str,
    uri: &str,
    client: &[(&str, &str)],
) -> RawResponse {
    let mut headers = vec![("X-Original-Method", method), ("X-Original-URI", uri)];
    headers.extend_from_slice(client);
    raw_request(gw.addr, "GET", "/auth/verify", &headers).await
}

fn identity(res: &RawResponse) -> Vec<(String, String)> {
    res.headers
        .iter()
        .filter(|(n, _)| n.starts_with("x-wx-"))
        .cloned()
        .collect()
}

fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter()
        .map(|(n, v)| (n.to_string(), v.to_string()))
        .collect()
}

fn assert_allowed(res: &RawResponse, expected_identity: &[(&str, &str)]) {
    assert_eq!(res.status, 200, "{res:?}");
    assert_eq!(res.body, "", "{res:?}");
    assert_eq!(res.header("cache-control"), Some("no-store"), "{res:?}");
    let mut got = identity(res);
    got.sort();
    let mut want = pairs(expected_identity);
    want.sort();
    assert_eq!(got, want, "{res:?}");
}

fn assert_401(res: &RawResponse, code: &str) {
    assert_error(res, 401, code);
    let challenge = res.header("www-authenticate").expect("a challenge");
    assert!(
        challenge.starts_with("Bearer realm=\"wxgate\""),
        "{challenge}"
    );
}

#[tokio::test]
async fn a_valid_token_is_answered_with_the_verified_identity_only() {
    let up = Upstream::start().await;
    let gw = gateway(&up, true, "").await;
    let auth = bearer(&token_for(&gw.gw, "o-alice", APPID, Some("u-alice")));
    let res = nginx_check(
        &gw,
        "POST",
        "/api/orders?page=2",
        &[
            ("Authorization", &auth),
            ("X-WX-OpenID", "o-admin"),
            ("X-WX-Role", "admin"),
        ],
    )
    .await;
    assert_allowed(
        &res,
        &[
            ("x-wx-openid", "o-alice"),
            ("x-wx-appid", APPID),
            ("x-wx-unionid", "u-alice"),
        ],
    );
    assert!(up.requests().is_empty(), "{:#?}", up.requests());
}

#[tokio::test]
async fn refusals_are_the_same_json_errors_as_on_proxied_routes() {
    let up = Upstream::start().await;
    let extra = format!(
        "[[routes]]\npath = \"/orders\"\nupstream = \"{}\"\nmethods = [\"GET\"]\n",
        up.url()
    );
    let gw = gateway(&up, true, &extra).await;
    let auth = bearer(&token(&gw.gw, "o-alice"));

    assert_401(
        &nginx_check(&gw, "GET", "/api/x", &[]).await,
        "missing_token",
    );
    let res = nginx_check(&gw, "GET", "/api/x", &[("Authorization", "Bearer a.b.c")]).await;
    assert_401(&res, "invalid_token");
    assert!(res
        .header("www-authenticate")
        .unwrap()
        .contains("error=\"invalid_token\""));

    let res = nginx_check(&gw, "GET", "/nowhere", &[("Authorization", &auth)]).await;
    assert_error(&res, 404, "not_found");
    let res = nginx_check(&gw, "DELETE", "/orders/1", &[("Authorization", &auth)]).await;
    assert_error(&res, 405, "method_not_allowed");
    assert_eq!(res.header("allow"), Some("GET"));
    for bad in ["/api/a%2Fb", "/api/../../etc", "/api/%00"] {
        let res = nginx_check(&gw, "GET", bad, &[("Authorization", &auth)]).await;
        assert_error(&res, 400, "invalid_request");
    }

    // The same path, normalized, does pass: the refusals were about the path.
    let res = nginx_check(
        &gw,
        "GET",
        "/api//./x/../orders",
        &[("Authorization", &auth)],
    )
    .await;
    assert_allowed(&res, &[("x-wx-openid", "o-alice"), ("x-wx-appid", APPID)]);

    // A logged-out token is refused by the same store as proxied requests.
    let res = raw_request(gw.addr, "POST", "/auth/logout", &[("Authorization", &auth)]).await;
    assert_eq!(res.status, 204, "{res:?}");
    let res = nginx_check(&gw, "GET", "/api/x", &[("Authorization", &auth)]).await;
    assert_401(&res, "token_revoked");
    assert!(up.requests().is_empty(), "{:#?}", up.requests());
}

#[tokio::test]
async fn none_and_optional_routes_answer_200_without_identity() {
    let up = Upstream::start().await;
    let extra = format!(
        "[[routes]]\npath = \"/opt\"\nupstream = \"{}\"\nauth = \"optional\"\n",
        up.url()
    );
    let gw = gateway(&up, true, &extra).await;
    let auth = bearer(&token(&gw.gw, "o-alice"));

    // auth = "none": even a valid token yields no identity.
    for client in [vec![], vec![("Authorization", auth.as_str())]] {
        let res = nginx_check(&gw, "GET", "/public/x", &client).await;
        assert_allowed(&res, &[]);
    }
    // wxgate's own endpoints check their tokens themselves.
    assert_allowed(&nginx_check(&gw, "POST", "/auth/login", &[]).await, &[]);

    assert_allowed(&nginx_check(&gw, "GET", "/opt/x", &[]).await, &[]);
    let res = nginx_check(&gw, "GET", "/opt/x", &[("Authorization", "Bearer nope")]).await;
    assert_401(&res, "invalid_token");
    let res = nginx_check(&gw, "GET", "/opt/x", &[("Authorization", &auth)]).await;
    assert_allowed(&res, &[("x-wx-openid", "o-alice"), ("x-wx-appid", APPID)]);
}

#[tokio::test]
async fn traefik_headers_and_x_forwarded_host_pick_the_route() {
    let up = Upstream::start().await;
    let extra = format!(
        "[[routes]]\npath = \"/\"\nhost = \"shop.example\"\nupstream = \"{}\"\nauth = \"none\"\n",
        up.url()
    );
    let gw = gateway(&up, true, &extra).await;
    let traefik = |host: &'static str| {
        vec![
            ("X-Forwarded-Method", "GET"),
            ("X-Forwarded-Uri", "/api/x"),
            ("X-Forwarded-Host", host),
        ]
    };
    // shop.example's own route is open; elsewhere /api needs a token.
    let res = raw_request(gw.addr, "GET", "/auth/verify", &traefik("shop.example:443")).await;
    assert_allowed(&res, &[]);
    let res = raw_request(gw.addr, "GET", "/auth/verify", &traefik("other.example")).await;
    assert_401(&res, "missing_token");
}

#[tokio::test]
async fn an_untrusted_peer_cannot_describe_the_request() {
    let up = Upstream::start().await;
    let gw = gateway(&up, false, "").await;
    let auth = bearer(&token(&gw.gw, "o-alice"));

    // A proxy missing from trusted_proxies fails closed, whatever it asks.
    for (name, value) in [
        ("X-Original-URI", "/public/x"),
        ("X-Forwarded-Uri", "/public/x"),
        ("X-Forwarded-Host", "shop.example"),
    ] {
        let res = raw_request(
            gw.addr,
            "GET",
            "/auth/verify/public/x",
            &[(name, value), ("Authorization", &auth)],
        )
        .await;
        assert_error(&res, 400, "invalid_request");
        assert!(
            res.json()["message"]
                .as_str()
                .unwrap()
                .contains("trusted_proxies"),
            "{res:?}"
        );
    }

    // Without them, the verify request describes itself (Envoy's path_prefix).
    let res = raw_request(gw.addr, "GET", "/auth/verify/api/x?q=1", &[]).await;
    assert_401(&res, "missing_token");
    let res = raw_request(
        gw.addr,
        "DELETE",
        "/auth/verify/api/x",
        &[("Authorization", &auth)],
    )
    .await;
    assert_allowed(&res, &[("x-wx-openid", "o-alice"), ("x-wx-appid", APPID)]);
    // The bare verify path describes nothing.
    let res = raw_request(gw.addr, "GET", "/auth/verify", &[("Authorization", &auth)]).await;
    assert_error(&res, 400, "invalid_request");
}

#[tokio::test]
async fn a_request_body_is_never_read_or_forwarded() {
    let up = Upstream::start().await;
    let gw = gateway(&up, true, "").await;
    let auth = bearer(&token(&gw.gw, "o-alice"));
    let body = "x".repeat(64 * 1024);
    let mut request = format!(
        "POST /auth/verify/api/upload HTTP/1.1\r\nHost: gw.test\r\nAuthorization: {auth}\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    request.extend_from_slice(body.as_bytes());
    let res = RawResponse::parse(&raw(gw.addr, &request).await);
    assert_allowed(&res, &[("x-wx-openid", "o-alice"), ("x-wx-appid", APPID)]);
    assert!(up.requests().is_empty(), "{:#?}", up.requests());
}

#[tokio::test]
async fn verify_path_and_identity_names_are_configurable() {
    let up = Upstream::start().await;
    let toml = base_config(&up.url(), &nowhere())
        .edit(
            "[server]\n",
            "[server]\ntrusted_proxies = [\"127.0.0.0/8\"]\n",
        )
        .edit("[auth]\n", "[auth]\nverify_path = \"/_wx/check\"\n")
        + "[identity]\nopenid_header = \"X-User\"\nappid_header = \"X-User-App\"\n";
    let gw = TestGateway::start(&toml).await;
    let auth = bearer(&token(&gw.gw, "o-alice"));
    let headers = [
        ("X-Original-Method", "GET"),
        ("X-Original-URI", "/api/x"),
        ("Authorization", auth.as_str()),
    ];
    let res = raw_request(gw.addr, "GET", "/_wx/check", &headers).await;
    assert_eq!(res.status, 200, "{res:?}");
    assert_eq!(res.header("x-user"), Some("o-alice"));
    assert_eq!(res.header("x-user-app"), Some(APPID));
    assert!(identity(&res).is_empty(), "{res:?}");
    // The default path is now an ordinary path: /auth is no route here.
    let res = raw_request(gw.addr, "GET", "/auth/verify", &headers).await;
    assert_error(&res, 404, "not_found");
}

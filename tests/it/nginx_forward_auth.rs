//! `deploy/forward-auth/nginx.conf`, unchanged but for its addresses, in a
//! real nginx: `auth_request` asks a real wxgate, and the recording upstream
//! plays the existing service behind nginx. Ignored unless asked for
//! (`--include-ignored`, as `.ci/run` does): it needs nginx.

use std::net::SocketAddr;

use crate::common::nginx::Nginx;
use crate::common::upstream::Upstream;
use crate::common::*;

const SNIPPET: &str = include_str!("../../deploy/forward-auth/nginx.conf");

/// nginx (trusted by wxgate) with the shipped snippet in front of `up`.
async fn setup(up: &Upstream) -> (TestGateway, Nginx) {
    let toml = base_config(&up.url(), &nowhere()).edit(
        "[server]\n",
        "[server]\ntrusted_proxies = [\"127.0.0.1\"]\n",
    );
    let gw = TestGateway::start(&toml).await;
    let wxgate = gw.addr;
    let app = up.addr();
    let nginx = Nginx::start(|listen: SocketAddr| snippet_for(listen, wxgate, app)).await;
    (gw, nginx)
}

/// The snippet with its example addresses replaced; panics if one of them
/// is no longer in the file, so the test keeps testing the shipped text.
fn snippet_for(listen: SocketAddr, wxgate: SocketAddr, app: SocketAddr) -> String {
    let mut text = SNIPPET.to_owned();
    for (from, to) in [
        ("server 127.0.0.1:8080;", format!("server {wxgate};")),
        ("server 127.0.0.1:9000;", format!("server {app};")),
        ("listen 80;", format!("listen {listen};")),
    ] {
        assert_eq!(text.matches(from).count(), 1, "`{from}` in the snippet");
        text = text.replace(from, &to);
    }
    text
}

async fn get(nginx: &Nginx, path: &str, headers: &[(&str, &str)]) -> RawResponse {
    let mut all = vec![("Host", "shop.example.com")];
    all.extend_from_slice(headers);
    raw_request(nginx.addr, "GET", path, &all).await
}

#[tokio::test]
#[ignore = "needs nginx (Debian package nginx-light)"]
async fn the_app_behind_nginx_sees_only_the_identity_wxgate_verified() {
    let up = Upstream::start().await;
    let (gw, nginx) = setup(&up).await;
    let auth = bearer(&token(&gw.gw, "o-alice"));
    let res = get(
        &nginx,
        "/api/orders?page=2",
        &[
            ("Authorization", &auth),
            ("X-WX-OpenID", "o-admin"),
            ("X-WX-UnionID", "u-admin"),
        ],
    )
    .await;
    assert_eq!(res.status, 200, "{res:?}\n{}", nginx.error_log());
    let got = up.next_request().await;
    assert_eq!(got.target, "/api/orders?page=2");
    assert_eq!(got.header_all("x-wx-openid"), ["o-alice"], "{got:?}");
    assert_eq!(got.header_all("x-wx-appid"), [APPID], "{got:?}");
    // This token has no unionid: the client's does not get through either.
    assert!(got.header_all("x-wx-unionid").is_empty(), "{got:?}");

    // A body goes to the app only; wxgate's check never carries it.
    let body = "x".repeat(100_000);
    let request = format!(
        "POST /api/upload HTTP/1.1\r\nHost: shop.example.com\r\nAuthorization: {auth}\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let res = RawResponse::parse(&raw(nginx.addr, request.as_bytes()).await);
    assert_eq!(res.status, 200, "{res:?}\n{}", nginx.error_log());
    let got = up.next_request().await;
    assert_eq!((got.method.as_str(), got.body_len), ("POST", 100_000));
    assert_eq!(got.header_all("x-wx-openid"), ["o-alice"]);

    // wxgate's own endpoints are reached through nginx too.
    let res = get(&nginx, "/auth/session", &[("Authorization", &auth)]).await;
    assert_eq!(res.status, 200, "{res:?}");
    assert_eq!(res.json()["openid"], "o-alice");
    assert_eq!(up.requests().len(), 2);
}

#[tokio::test]
#[ignore = "needs nginx (Debian package nginx-light)"]
async fn refused_requests_get_wxgate_401_from_nginx() {
    let up = Upstream::start().await;
    let (_gw, nginx) = setup(&up).await;
    let res = get(&nginx, "/api/orders", &[]).await;
    assert_error(&res, 401, "missing_token");
    assert_eq!(
        res.header("www-authenticate"),
        Some("Bearer realm=\"wxgate\"")
    );

    let res = get(&nginx, "/api/orders", &[("Authorization", "Bearer a.b.c")]).await;
    assert_error(&res, 401, "invalid_token");
    assert!(res
        .header("www-authenticate")
        .is_some_and(|c| c.contains("error=\"invalid_token\"")));

    // A client describing another request to wxgate changes nothing.
    let res = get(
        &nginx,
        "/api/orders",
        &[
            ("X-Original-URI", "/public/x"),
            ("X-Forwarded-Uri", "/public/x"),
            ("X-Forwarded-Method", "GET"),
        ],
    )
    .await;
    assert_error(&res, 401, "missing_token");
    // Nor can it ask wxgate's check directly.
    assert_eq!(get(&nginx, "/auth/verify/public/x", &[]).await.status, 404);
    assert!(up.requests().is_empty(), "{:#?}", up.requests());
}

#[tokio::test]
#[ignore = "needs nginx (Debian package nginx-light)"]
async fn a_public_route_passes_without_identity() {
    let up = Upstream::start().await;
    let (_gw, nginx) = setup(&up).await;
    let res = get(&nginx, "/public/news", &[("X-WX-OpenID", "o-admin")]).await;
    assert_eq!(res.status, 200, "{res:?}\n{}", nginx.error_log());
    let got = up.next_request().await;
    assert_eq!(got.target, "/public/news");
    assert!(got.header_all("x-wx-openid").is_empty(), "{got:?}");
    assert!(got.header_all("x-wx-appid").is_empty(), "{got:?}");
}

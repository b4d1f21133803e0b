//! Route selection and the request-target the upstream receives: longest
//! prefix on segment boundaries, host routes first, 404/405, `strip_prefix`
//! and base paths, path normalization, and never acting as an open proxy.

use std::time::Duration;

use crate::common::upstream::Upstream;
use crate::common::*;
use tokio::net::TcpListener;

#[tokio::test]
async fn longest_prefix_wins_and_only_on_segment_boundaries() {
    let up = Upstream::start().await;
    let routes = format!(
        r#"
[[routes]]
path = "/api/x"
upstream = "{0}/deep"
auth = "none"

[[routes]]
path = "/apix-other"
upstream = "{0}/other"
auth = "none"
"#,
        up.url()
    );
    let gw = gateway_with(&up, &routes).await;
    let token = token(&gw.gw, "o-alice");

    // `/api/x` is the longer prefix: served by it, no token needed.
    let res = raw_request(gw.addr, "GET", "/api/x/y?z=1", &[]).await;
    assert_eq!(res.status, 200, "{res:?}");
    assert_eq!(up.next_request().await.target, "/deep/api/x/y?z=1");
    let res = raw_request(gw.addr, "GET", "/api/x", &[]).await;
    assert_eq!(res.status, 200, "{res:?}");
    assert_eq!(up.next_request().await.target, "/deep/api/x");

    // `/api/xy` is not under `/api/x`: it falls to `/api`, which needs a token.
    let res = raw_request(gw.addr, "GET", "/api/xy", &[]).await;
    assert_error(&res, 401, "missing_token");
    let auth = bearer(&token);
    let res = raw_request(gw.addr, "GET", "/api/xy", &[("Authorization", &auth)]).await;
    assert_eq!(res.status, 200, "{res:?}");
    assert_eq!(up.next_request().await.target, "/api/xy");

    // `/apix` matches neither `/api` nor `/apix-other`.
    let res = raw_request(gw.addr, "GET", "/apix", &[("Authorization", &auth)]).await;
    assert_error(&res, 404, "not_found");
    let res = raw_request(gw.addr, "GET", "/apix-other/a", &[]).await;
    assert_eq!(res.status, 200, "{res:?}");
    assert_eq!(up.next_request().await.target, "/other/apix-other/a");

    assert_eq!(up.requests().len(), 4, "{:#?}", up.requests());
}

#[tokio::test]
async fn host_routes_are_tried_first_ignoring_case_and_port() {
    let up = Upstream::start().await;
    let routes = format!(
        r#"
[[routes]]
path = "/"
host = "svc.example"
upstream = "{0}/host-root"
auth = "none"

[[routes]]
path = "/only"
host = "narrow.example"
upstream = "{0}/narrow"
auth = "none"
"#,
        up.url()
    );
    let gw = gateway_with(&up, &routes).await;

    // The host route wins over the longer host-less `/api` (which needs a token).
    let res = raw_request(gw.addr, "GET", "/api/x", &[("Host", "SVC.Example:8443")]).await;
    assert_eq!(res.status, 200, "{res:?}");
    assert_eq!(up.next_request().await.target, "/host-root/api/x");

    // Another host: the host-less routes answer.
    let res = raw_request(gw.addr, "GET", "/api/x", &[("Host", "other.example")]).await;
    assert_error(&res, 401, "missing_token");
    let res = raw_request(gw.addr, "GET", "/public/p", &[("Host", "other.example")]).await;
    assert_eq!(res.status, 200, "{res:?}");
    assert_eq!(up.next_request().await.target, "/public/p");

    // A matching host whose routes do not match the path: host-less routes next.
    let res = raw_request(gw.addr, "GET", "/only/a", &[("Host", "NARROW.example")]).await;
    assert_eq!(res.status, 200, "{res:?}");
    assert_eq!(up.next_request().await.target, "/narrow/only/a");
    let res = raw_request(gw.addr, "GET", "/public/q", &[("Host", "narrow.example:1")]).await;
    assert_eq!(res.status, 200, "{res:?}");
    assert_eq!(up.next_request().await.target, "/public/q");
    let res = raw_request(gw.addr, "GET", "/nothing", &[("Host", "narrow.example")]).await;
    assert_error(&res, 404, "not_found");

    assert_eq!(up.requests().len(), 4, "{:#?}", up.requests());
}

#[tokio::test]
async fn no_matching_route_is_404_not_found_json() {
    let up = Upstream::start().await;
    let gw = gateway_with(&up, "").await;
    for target in ["/", "/nope", "/publicx", "/apis/x"] {
        let res = raw_request(gw.addr, "GET", target, &[]).await;
        assert_error(&res, 404, "not_found");
        assert!(res.json()["message"].is_string(), "{res:?}");
    }
    assert!(up.requests().is_empty(), "{:#?}", up.requests());
}

#[tokio::test]
async fn methods_outside_the_route_list_get_405_with_allow() {
    let up = Upstream::start().await;
    let routes = format!(
        r#"
[[routes]]
path = "/limited"
upstream = "{}"
auth = "none"
methods = ["GET", "POST"]
"#,
        up.url()
    );
    let gw = gateway_with(&up, &routes).await;

    for method in ["DELETE", "PUT", "PATCH"] {
        let res = raw_request(gw.addr, method, "/limited/x", &[]).await;
        assert_error(&res, 405, "method_not_allowed");
        let allow = res.header("allow").expect("Allow header");
        let allowed: Vec<&str> = allow.split(',').map(str::trim).collect();
        assert!(
            allowed.contains(&"GET") && allowed.contains(&"POST"),
            "{allow}"
        );
        assert!(!allowed.contains(&method), "{allow}");
    }
    assert!(up.requests().is_empty(), "{:#?}", up.requests());

    let res = raw_request(gw.addr, "POST", "/limited/x", &[("Content-Length", "0")]).await;
    assert_eq!(res.status, 200, "{res:?}");
    let got = up.next_request().await;
    assert_eq!(
        (got.method.as_str(), got.target.as_str()),
        ("POST", "/limited/x")
    );
}

#[tokio::test]
async fn strip_prefix_and_upstream_base_path_shape_the_target() {
    let up = Upstream::start().await;
    let routes = format!(
        r#"
[[routes]]
path = "/svc"
upstream = "{0}/base"
auth = "none"
strip_prefix = true

[[routes]]
path = "/bare"
upstream = "{0}"
auth = "none"
strip_prefix = true

[[routes]]
path = "/keep"
upstream = "{0}/b2/"
auth = "none"
"#,
        up.url()
    );
    let gw = gateway_with(&up, &routes).await;

    let cases = [
        ("/svc/a/b?x=1&y=%2F&z=..%2F", "/base/a/b?x=1&y=%2F&z=..%2F"),
        ("/svc", "/base/"),
        ("/svc/", "/base/"),
        ("/svc?q=1", "/base/?q=1"),
        ("/bare", "/"),
        ("/bare/x?a=b", "/x?a=b"),
        ("/keep/z?q=%20x&&r", "/b2/keep/z?q=%20x&&r"),
        ("/public/p/?", "/public/p/?"),
    ];
    for (sent, expected) in cases {
        let res = raw_request(gw.addr, "GET", sent, &[]).await;
        assert_eq!(res.status, 200, "{sent}: {res:?}");
        assert_eq!(up.next_request().await.target, expected, "sent {sent}");
    }
}

#[tokio::test]
async fn the_upstream_gets_the_normalized_path_and_auth_follows_it() {
    let up = Upstream::start().await;
    let gw = gateway_with(&up, "").await;
    let auth = bearer(&token(&gw.gw, "o-alice"));

    // Dot segments that climb out of /public land on /api, which needs a token.
    for sneaky in [
        "/public/../api/x",
        "/public/%2e%2e/api/x",
        "/public/.%2E/api/x",
    ] {
        let res = raw_request(gw.addr, "GET", sneaky, &[]).await;
        assert_error(&res, 401, "missing_token");
    }
    assert!(up.requests().is_empty(), "{:#?}", up.requests());

    let cases = [
        ("/public/../api/x", "/api/x"),
        ("/public/%2e%2e/api?q=%2e%2e", "/api?q=%2e%2e"),
        ("//api//x", "/api/x"),
        ("/api/./a/../b/", "/api/b/"),
        ("/api/%7Euser/%61", "/api/~user/a"),
        ("/api/a%3fb", "/api/a%3Fb"),
    ];
    for (sent, expected) in cases {
        let res = raw_request(gw.addr, "GET", sent, &[("Authorization", &auth)]).await;
        assert_eq!(res.status, 200, "{sent}: {res:?}");
        let got = up.next_request().await;
        assert_eq!(got.target, expected, "sent {sent}");
        assert_eq!(got.header("x-wx-openid"), Some("o-alice"));
    }
}

#[tokio::test]
async fn ambiguous_paths_are_refused_with_400() {
    let up = Upstream::start().await;
    let gw = gateway_with(&up, "").await;
    let auth = bearer(&token(&gw.gw, "o-alice"));
    for bad in [
        "/api%2fx",
        "/api%2Fx",
        "/public/%2f",
        "/public/%5c",
        "/public/%5C..%5C",
        "/public/%00",
        "/..",
        "/public/../../api",
        "/public/%2e%2e/%2e%2e",
        "/public/%zz",
    ] {
        let res = raw_request(gw.addr, "GET", bad, &[("Authorization", &auth)]).await;
        assert_error(&res, 400, "invalid_request");
    }
    assert!(up.requests().is_empty(), "{:#?}", up.requests());
}

/// A local listener standing in for a host nobody should dial.
async fn bait() -> (TcpListener, String) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    (listener, addr)
}

/// Nothing connected to `listener` (the request was answered already, so a
/// dial would have happened before).
async fn assert_never_dialled(listener: &TcpListener) {
    let accepted = tokio::time::timeout(Duration::from_millis(200), listener.accept()).await;
    assert!(accepted.is_err(), "the gateway dialled the target");
}

#[tokio::test]
async fn connect_is_405_and_dials_nothing() {
    let up = Upstream::start().await;
    let gw = gateway_with(&up, "").await;
    let (listener, addr) = bait().await;
    for target in [addr.as_str(), "evil.example:443"] {
        let res = raw_request(gw.addr, "CONNECT", target, &[("Host", target)]).await;
        assert_error(&res, 405, "method_not_allowed");
        // CONNECT names no resource of wxgate's whose methods `Allow` could
        // list; an empty one read as "nothing is allowed anywhere".
        assert_eq!(res.header("allow"), None, "{res:?}");
    }
    assert_never_dialled(&listener).await;
    assert!(up.requests().is_empty(), "{:#?}", up.requests());
}

#[tokio::test]
async fn absolute_form_for_a_foreign_host_is_400_and_dials_nothing() {
    let up = Upstream::start().await;
    let gw = gateway_with(&up, "").await;
    let (listener, addr) = bait().await;
    let bait_target = format!("http://{addr}/public/x");
    let upstream_target = format!("{}/public/x", up.url());
    for target in [
        "http://evil.example/",
        "http://evil.example/public/x",
        bait_target.as_str(),
        // The upstream itself is not a host wxgate serves either.
        upstream_target.as_str(),
    ] {
        let res = raw_request(gw.addr, "GET", target, &[("Host", "evil.example")]).await;
        assert_error(&res, 400, "invalid_request");
    }
    assert_never_dialled(&listener).await;
    assert!(up.requests().is_empty(), "{:#?}", up.requests());
}

#[tokio::test]
async fn absolute_form_for_a_route_host_is_served() {
    let up = Upstream::start().await;
    let routes = format!(
        r#"
[[routes]]
path = "/x"
host = "svc.example"
upstream = "{}/hosted"
auth = "none"
"#,
        up.url()
    );
    let gw = gateway_with(&up, &routes).await;
    let res = raw_request(
        gw.addr,
        "GET",
        "http://SVC.example:8080/x/y?q=1",
        &[("Host", "svc.example:8080")],
    )
    .await;
    assert_eq!(res.status, 200, "{res:?}");
    let got = up.next_request().await;
    assert_eq!(got.target, "/hosted/x/y?q=1");
    assert_eq!(got.header("host"), Some(up.addr().to_string().as_str()));
}

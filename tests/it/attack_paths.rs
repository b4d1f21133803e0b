//! Path confusion: a public route (`/public`) next to a protected one
//! (`/api`), and paths built to be read one way by the gateway and another
//! by the upstream. Whatever the spelling, a request without a token either
//! is refused or reaches the upstream under `/public`, on a path that no
//! common server reads as anything under `/api`. The single-rule cases
//! (plain dot segments, `%2f`, `%5c`, NUL) are in `tests/it/routing.rs`; the
//! normalizer's own properties are proptests in `src/path.rs` and the
//! `path_normalize` fuzz target.

use crate::common::upstream::Upstream;
use crate::common::*;

/// Sends `path` without a token; returns the status, and checks the
/// invariant on whatever reached the upstream.
async fn probe(gw: &TestGateway, up: &Upstream, path: &str) -> u16 {
    let before = up.requests().len();
    let answer = raw(gw.addr, &http_request("GET", path, &[])).await;
    let status = if answer.is_empty() {
        0
    } else {
        status_of(&answer)
    };
    let forwarded = up.requests()[before..].to_vec();
    match status {
        200 => {
            assert_eq!(forwarded.len(), 1, "{path:?}");
            let target = &forwarded[0].target;
            let path_part = target.split('?').next().unwrap();
            assert!(
                path_part == "/public" || path_part.starts_with("/public/"),
                "{path:?} reached the upstream as {target:?}"
            );
            for seg in path_part.split('/').skip(1) {
                let name = seg.split(';').next().unwrap();
                assert!(!matches!(name, "." | ".."), "{path:?} -> {target:?}");
                let upper = seg.to_ascii_uppercase();
                for bad in ["%2E", "%2F", "%5C", "\\", "%00"] {
                    assert!(!upper.contains(bad), "{path:?} -> {target:?}");
                }
            }
        }
        _ => {
            assert!(forwarded.is_empty(), "{path:?} -> {status} yet forwarded");
            assert!(
                matches!(status, 0 | 400 | 401 | 404 | 414 | 431),
                "{path:?}: {answer}"
            );
        }
    }
    status
}

async fn setup() -> (Upstream, TestGateway) {
    let up = Upstream::start().await;
    let gw = gateway_with(&up, "").await;
    (up, gw)
}

#[tokio::test]
async fn dot_segments_raw_encoded_and_with_parameters_never_reach_the_api() {
    let (up, gw) = setup().await;
    for path in [
        "/public/../api/x",
        "/public/./../api/x",
        "/public/%2e%2e/api/x",
        "/public/%2E%2E/api/x",
        "/public/.%2e/api/x",
        "/public/%2e./api/x",
        "/public/%2e/../api/x",
        "/public/x/../../api/x",
        "/public/..%2fapi/x",
        "/public/..%2Fapi/x",
        "/public/..%5capi/x",
        "/public/..\\api/x",
        "/public\\..\\api/x",
        "/public/%252e%252e/api/x",
        "/public/..;/api/x",
        "/public/..;jsessionid=1/api/x",
        "/public/.;/../api/x",
        "/public/%2e%2e;/api/x",
        "/public;/../api/x",
        "/public/%c0%ae%c0%ae/api/x",
        "/public/..%00/api/x",
        "/public/..%01/api/x",
    ] {
        let status = probe(&gw, &up, path).await;
        assert_ne!(status, 0, "{path:?}: no answer");
    }
}

#[tokio::test]
async fn what_climbs_into_the_api_is_judged_as_the_api() {
    let (up, gw) = setup().await;
    for path in [
        "/public/../api/x",
        "/public/%2e%2e/api/x",
        "/public;x/../api/x",
        "//public//..//api//x",
        "/public/a/b/../../../api",
    ] {
        assert_eq!(probe(&gw, &up, path).await, 401, "{path:?}");
    }
    for path in ["/public/..;/api/x", "/public/%2e%2e;/api/x", "/public/.;/x"] {
        assert_eq!(probe(&gw, &up, path).await, 400, "{path:?}");
    }
    assert!(up.requests().is_empty());
}

#[tokio::test]
async fn slashes_case_parameters_and_fragments_keep_their_route() {
    let (up, gw) = setup().await;
    let cases: &[(&str, u16)] = &[
        ("//api/x", 401),
        ("///api///x", 401),
        ("/api//x", 401),
        ("/API/x", 404),
        ("/Api/x", 404),
        ("/api;x=1/y", 404),
        // An empty segment with parameters: Tomcat reads `/;/api` as `/api`.
        ("/;/api/x", 400),
        ("/;x=1/api/x", 400),
        ("/public/;/x", 400),
        ("/api%3bx/y", 404),
        ("/api./x", 404),
        ("/api%20/x", 404),
        ("/apix", 404),
        ("/api%2Dx", 404),
        ("/public%2fx", 400),
        // The fragment is dropped, never read as path.
        ("/public/x#/../../api", 200),
        ("/public/x?/../api", 200),
        ("/public/x?%2e%2e/api", 200),
        ("/%70ublic/x", 200),
        ("/public/x;/../y", 200),
        ("/public/%61pi", 200),
    ];
    for (path, expected) in cases {
        assert_eq!(probe(&gw, &up, path).await, *expected, "{path:?}");
    }
    // The query is passed unchanged, the path normalized.
    let got: Vec<String> = up.requests().into_iter().map(|r| r.target).collect();
    assert!(got.contains(&"/public/x?/../api".to_owned()), "{got:?}");
    assert!(got.contains(&"/public/x".to_owned()), "{got:?}");
    assert!(got.contains(&"/public/api".to_owned()), "{got:?}");
}

#[tokio::test]
async fn very_long_paths_are_bounded_and_exact() {
    let (up, gw) = setup().await;
    // Under the head limit: forwarded whole.
    let long = format!("/public/{}", "a/".repeat(3000));
    assert_eq!(probe(&gw, &up, &long).await, 200);
    assert_eq!(up.last().unwrap().target, long);
    // Many dot segments: still linear, still exact.
    let dots = format!("/public/{}x", "a/../".repeat(2000));
    assert_eq!(probe(&gw, &up, &dots).await, 200);
    assert_eq!(up.last().unwrap().target, "/public/x");
    // Over it: refused by the parser, never forwarded.
    let huge = format!("/public/{}", "b".repeat(100_000));
    let status = probe(&gw, &up, &huge).await;
    assert!(matches!(status, 414 | 431), "{status}");
    let deep = format!("/public/{}", "%2e%2e/".repeat(4000));
    assert!(matches!(probe(&gw, &up, &deep).await, 400 | 414 | 431));
}

//! Attacks on identity: a client posing as someone else to the upstream, or
//! steering which rule applies. Already covered elsewhere and not repeated:
//! `X-WX-*` in every case and with underscores on every route, in trailers
//! and named in `Connection` (`tests/it/headers.rs`); an openid with CR/LF from
//! WeChat (`tests/it/login_faults.rs`). Here: duplicates, framing tricks around
//! header names, path-override headers, and every kind of hostile openid
//! WeChat could send, checked all the way to the upstream.

use crate::common::fake_wechat::Fault;
use crate::common::login_flow::Setup;
use crate::common::upstream::Upstream;
use crate::common::*;

const PATH_OVERRIDES: &[&str] = &[
    "X-Original-URL",
    "X-Original-URI",
    "X-Rewrite-URL",
    "X-Forwarded-Uri",
    "X-Forwarded-Path",
    "X-Forwarded-Prefix",
    "x_original_url",
    "X_Rewrite_Url",
];

#[tokio::test]
async fn path_override_headers_never_change_the_route_or_reach_the_upstream() {
    let up = Upstream::start().await;
    let gw = gateway_with(&up, "").await;
    let overrides: Vec<(&str, &str)> = PATH_OVERRIDES.iter().map(|h| (*h, "/api/admin")).collect();

    // Public request claiming to be for the protected path: served as the
    // public path it is, and the upstream never hears the claim.
    let res = raw_request(gw.addr, "GET", "/public/x", &overrides).await;
    assert_eq!(res.status, 200, "{res:?}");
    let got = up.next_request().await;
    assert_eq!(got.target, "/public/x");
    for name in PATH_OVERRIDES {
        assert_eq!(got.header(name), None, "{name} reached the upstream");
    }
    assert!(
        !got.headers.iter().any(|(_, v)| v.contains("/api/admin")),
        "{got:?}"
    );

    // Protected request claiming to be public: still needs its token.
    let overrides: Vec<(&str, &str)> = PATH_OVERRIDES.iter().map(|h| (*h, "/public/x")).collect();
    let res = raw_request(gw.addr, "GET", "/api/admin", &overrides).await;
    assert_error(&res, 401, "missing_token");
    assert_eq!(up.requests().len(), 1, "the protected request was proxied");
}

#[tokio::test]
async fn duplicated_identity_headers_leave_exactly_the_injected_one() {
    let up = Upstream::start().await;
    let gw = gateway_with(&up, "").await;
    let auth = bearer(&token_for(&gw.gw, "o-alice", APPID, Some("u-alice")));
    let res = raw_request(
        gw.addr,
        "GET",
        "/api/x",
        &[
            ("X-WX-OpenID", "o-admin"),
            ("Authorization", &auth),
            ("X-WX-OpenID", "o-admin"),
            ("x-wx-openid", "o-root"),
            ("X_WX_OPENID", "o-root"),
            ("X-WX-UnionID", "u-admin"),
            ("X-WX-AppID", "wxother"),
            ("X-WX-AppID", "wxother"),
        ],
    )
    .await;
    assert_eq!(res.status, 200, "{res:?}");
    let got = up.next_request().await;
    assert_eq!(got.header_all("x-wx-openid"), ["o-alice"]);
    assert_eq!(got.header_all("x-wx-unionid"), ["u-alice"]);
    assert_eq!(got.header_all("x-wx-appid"), [APPID]);
    assert!(
        !got.headers.iter().any(|(n, _)| n.starts_with("x_wx")),
        "{got:?}"
    );
}

#[tokio::test]
async fn header_framing_tricks_are_refused_before_any_route() {
    // Each would let a lenient parser read an identity header that a strict
    // one skipped (or the reverse): the gateway refuses the request whole.
    let up = Upstream::start().await;
    let gw = gateway_with(&up, "").await;
    let heads: &[&[u8]] = &[
        // obs-fold: a continuation line that spells an identity header.
        b"GET /public/x HTTP/1.1\r\nHost: gw.test\r\nX-Note: a\r\n X-WX-OpenID: o-admin\r\nConnection: close\r\n\r\n",
        // Whitespace between the name and the colon.
        b"GET /public/x HTTP/1.1\r\nHost: gw.test\r\nX-WX-OpenID : o-admin\r\nConnection: close\r\n\r\n",
        // A bare LF inside a value.
        b"GET /public/x HTTP/1.1\r\nHost: gw.test\r\nX-Note: a\nX-WX-OpenID: o-admin\r\nConnection: close\r\n\r\n",
        // A bare CR inside a value.
        b"GET /public/x HTTP/1.1\r\nHost: gw.test\r\nX-Note: a\rX-WX-OpenID: o-admin\r\nConnection: close\r\n\r\n",
        // NUL in a header name.
        b"GET /public/x HTTP/1.1\r\nHost: gw.test\r\nX-WX\0-OpenID: o-admin\r\nConnection: close\r\n\r\n",
    ];
    for head in heads {
        let answer = raw(gw.addr, head).await;
        let shown = String::from_utf8_lossy(head);
        if answer.is_empty() {
            continue; // closed without an answer: refused as well
        }
        let status = status_of(&answer);
        if status == 200 {
            // Tolerated only if nothing identity-like got through.
            let got = up.last().expect("a 200 was proxied");
            assert!(
                !got.headers.iter().any(|(_, v)| v.contains("o-admin")),
                "{shown:?}: {got:?}"
            );
        } else {
            assert_eq!(status, 400, "{shown:?}: {answer}");
        }
    }
    for got in up.requests() {
        assert!(
            !got.headers.iter().any(|(_, v)| v.contains("o-admin")),
            "{got:?}"
        );
    }
}

/// Openids (and unionids) that WeChat should never send, each of which
/// would split, fold or smuggle a header if wxgate passed it on.
const HOSTILE_IDS: &[&str] = &[
    "o-eve\\r\\nX-WX-OpenID: admin",
    "o-eve\\nX-WX-OpenID: admin",
    "o-eve\\rX-WX-OpenID: admin",
    "o-eve\\u0000admin",
    "o-eve\\tadmin",
    "o-eve admin",
    "o-eve\\u007f",
    "o-évé",
    "o-eve\\u2028admin",
    " o-eve",
    "o-eve,o-admin",
    "o-eve;o-admin",
    "\\\"o-eve\\\"",
    "",
];

#[tokio::test]
async fn hostile_openids_from_wechat_never_become_a_header() {
    let s = Setup::start().await;
    for id in HOSTILE_IDS {
        let answers = [
            format!(r#"{{"session_key":"a2V5a2V5a2V5a2V5a2V5aw==","openid":"{id}"}}"#),
            format!(
                r#"{{"session_key":"a2V5a2V5a2V5a2V5a2V5aw==","openid":"o-fine","unionid":"{id}"}}"#
            ),
        ];
        for (i, answer) in answers.into_iter().enumerate() {
            let code = s.fake.mint_code(APPID, "o-eve");
            s.fake.push_fault(Fault::Raw(answer));
            let res = s.login(&code).await;
            if i == 1 && id.is_empty() {
                // An empty unionid is "none": the login stands, without one.
                assert_eq!(res.status, 200, "{}", res.body);
                continue;
            }
            res.assert_error(503, "wechat_unavailable");
        }
    }
    // A well-formed login then reaches the upstream as exactly one header
    // per identity, with exactly the ids WeChat gave.
    s.fake.set_unionid(APPID, "o-eve", Some("u-eve"));
    let token = s.login_as("o-eve").await;
    let res = raw_request(
        s.gw.addr,
        "GET",
        "/api/x",
        &[("Authorization", &bearer(&token))],
    )
    .await;
    assert_eq!(res.status, 200, "{res:?}");
    let got = s.up.next_request().await;
    assert_eq!(got.header_all("x-wx-openid"), ["o-eve"]);
    assert_eq!(got.header_all("x-wx-unionid"), ["u-eve"]);
    assert_eq!(got.header_all("x-wx-appid"), [APPID]);
    assert_eq!(s.up.requests().len(), 1);
}

#[tokio::test]
async fn two_host_headers_are_400_and_never_routed() {
    // Host routes pick by Host: with two, the gateway and whatever sits
    // beside it could each pick another (RFC 9112 §3.2 asks for a 400).
    let up = Upstream::start().await;
    let extra = format!(
        "[[routes]]\npath = \"/\"\nhost = \"open.example\"\nupstream = \"{}\"\nauth = \"none\"\n",
        up.url()
    );
    let gw = gateway_with(&up, &extra).await;
    for hosts in [
        "Host: open.example\r\nHost: gw.test\r\n",
        "Host: gw.test\r\nHost: open.example\r\n",
        "Host: open.example\r\nhost: open.example\r\n",
    ] {
        let head = format!("GET /api/x HTTP/1.1\r\n{hosts}Connection: close\r\n\r\n");
        let res = RawResponse::parse(&raw(gw.addr, head.as_bytes()).await);
        assert_error(&res, 400, "invalid_request");
    }
    // One Host picks the host route as usual.
    let res = raw_request(gw.addr, "GET", "/api/x", &[("Host", "open.example")]).await;
    assert_eq!(res.status, 200, "{res:?}");
    assert_eq!(up.requests().len(), 1);
}

#[tokio::test]
async fn x_forwarded_host_is_the_host_that_was_routed_on() {
    use http_body_util::Empty;

    let up = Upstream::start().await;
    let extra = format!(
        "[[routes]]\npath = \"/\"\nhost = \"open.example\"\nupstream = \"{}\"\nauth = \"none\"\n",
        up.url()
    );
    let gw = gateway_with(&up, &extra).await;
    // HTTP/1.1 absolute form: the target's authority is what is routed on.
    let res = raw_request(
        gw.addr,
        "GET",
        "http://open.example/x",
        &[("Host", "evil.example")],
    )
    .await;
    assert_eq!(res.status, 200, "{res:?}");
    let got = up.next_request().await;
    assert_eq!(got.header_all("x-forwarded-host"), ["open.example"]);

    // HTTP/2: :authority is routed on, a differing Host is not believed.
    let (mut sender, _conn) = h2_connect(gw.addr).await;
    let req = http::Request::get("http://open.example/y")
        .header("host", "evil.example")
        .body(Empty::<bytes::Bytes>::new())
        .unwrap();
    let res = sender.send_request(req).await.unwrap();
    assert_eq!(res.status(), 200);
    let got = up.next_request().await;
    assert_eq!(got.target, "/y");
    assert_eq!(got.header_all("x-forwarded-host"), ["open.example"]);
    assert!(
        !got.headers.iter().any(|(_, v)| v.contains("evil")),
        "{got:?}"
    );
}

mod stripping {
    //! The header rule itself, for any spelling: whatever identity-like
    //! headers a client sends, in any case, with `_` or `-`, repeated or
    //! named in `Connection`, exactly the injected values remain.

    use crate::common::*;
    use http::{HeaderMap, HeaderName, HeaderValue};
    use proptest::prelude::*;

    fn spelling() -> impl Strategy<Value = String> {
        let base = prop_oneof![
            Just("x-wx-openid"),
            Just("x-wx-unionid"),
            Just("x-wx-appid"),
            Just("x-wx-"),
            Just("x-wx-anything"),
        ];
        (base, any::<u64>()).prop_map(|(name, bits)| {
            name.chars()
                .enumerate()
                .map(
                    |(i, c)| match (c, bits >> (i % 64) & 1, bits >> ((i + 7) % 64) & 1) {
                        ('-', 1, _) => '_',
                        (c, _, 1) => c.to_ascii_uppercase(),
                        (c, _, _) => c,
                    },
                )
                .collect()
        })
    }

    type Fixture = (
        std::sync::Arc<wxgate::state::Snapshot>,
        std::sync::Arc<wxgate::auth::token::Verified>,
    );

    /// The test config's runtime and a verified identity, built once.
    fn fixture() -> &'static Fixture {
        static FIXTURE: std::sync::OnceLock<Fixture> = std::sync::OnceLock::new();
        FIXTURE.get_or_init(|| {
            let config = wxgate::Config::parse_with_env(
                &base_config(&nowhere(), &nowhere()),
                std::path::Path::new("p.toml"),
                Some(Default::default()),
            )
            .unwrap();
            let gw = wxgate::Gateway::new(config).unwrap();
            let rt = gw.snapshot();
            let token = token_for(&gw, "o-alice", APPID, Some("u-alice"));
            let who = rt.keys.verify(&token, wxgate::auth::token::now()).unwrap();
            (rt, who)
        })
    }

    proptest! {
        #[test]
        fn only_the_injected_identity_survives(
            names in proptest::collection::vec(spelling(), 1..8),
            in_connection in any::<bool>(),
        ) {
            let (rt, who) = fixture();
            let mut h = HeaderMap::new();
            for name in &names {
                h.append(
                    HeaderName::from_bytes(name.as_bytes()).unwrap(),
                    HeaderValue::from_static("spoof"),
                );
            }
            if in_connection {
                h.append(http::header::CONNECTION, HeaderValue::from_static("x-wx-openid, x-wx-appid"));
            }
            rt.strip[0][1].apply(&mut h);
            wxgate::auth::inject_identity(&mut h, who, &rt.identity);
            prop_assert!(h.values().all(|v| v != "spoof"), "{:?}", h);
            prop_assert_eq!(h.get_all("x-wx-openid").iter().count(), 1);
            prop_assert_eq!(h.get_all("x-wx-appid").iter().count(), 1);
            prop_assert_eq!(h.get_all("x-wx-unionid").iter().count(), 1);
            prop_assert_eq!(h.get("x-wx-openid").unwrap(), "o-alice");
        }
    }
}

/// A protected host route and a public catch-all: every spelling of the
/// protected host (trailing dot, case, port) is routed to it, and the
/// upstream hears the host in its normal spelling. A Host that is no host
/// name is 400, never the catch-all.
#[tokio::test]
async fn host_spellings_cannot_dodge_a_host_route() {
    use http_body_util::Empty;

    let up = Upstream::start().await;
    let extra = format!(
        "[[routes]]\npath = \"/\"\nhost = \"admin.example\"\nupstream = \"{u}\"\nauth = \"required\"\n\
         [[routes]]\npath = \"/\"\nupstream = \"{u}\"\nauth = \"none\"\n",
        u = up.url()
    );
    let gw = gateway_with(&up, &extra).await;
    for host in [
        "admin.example",
        "admin.example.",
        "admin.example.:80",
        "ADMIN.Example.",
        "admin.example:",
    ] {
        let res = raw_request(gw.addr, "GET", "/x", &[("Host", host)]).await;
        assert_eq!(res.status, 401, "Host {host:?}: {res:?}");
        assert_eq!(res.json()["error"], "missing_token", "{host:?}");
    }
    let target = "http://admin.example./x";
    let res = raw_request(gw.addr, "GET", target, &[("Host", "other.example")]).await;
    assert_eq!(res.status, 401, "{target}: {res:?}");
    assert!(up.requests().is_empty(), "{:#?}", up.requests());

    // With a token, the upstream is told the host as the route writes it.
    let auth = bearer(&token(&gw.gw, "o-admin"));
    for (host, told) in [
        ("admin.example.", "admin.example"),
        ("Admin.Example.:80", "admin.example:80"),
        ("admin.example:8080", "admin.example:8080"),
    ] {
        let res = raw_request(
            gw.addr,
            "GET",
            "/x",
            &[("Host", host), ("Authorization", &auth)],
        )
        .await;
        assert_eq!(res.status, 200, "{host}: {res:?}");
        let got = up.next_request().await;
        assert_eq!(got.header_all("x-forwarded-host"), [told], "{host}");
    }
    // HTTP/2's :authority is normalized alike.
    let (mut sender, _conn) = h2_connect(gw.addr).await;
    let req = http::Request::get("http://ADMIN.example./y")
        .body(Empty::<bytes::Bytes>::new())
        .unwrap();
    let res = sender.send_request(req).await.unwrap();
    assert_eq!(res.status(), 401);

    for bad in [
        "admin example",
        "user@admin.example",
        "admin..example",
        ".admin.example",
        "admin.example..",
        "admin.example:http",
    ] {
        let res = raw_request(gw.addr, "GET", "/x", &[("Host", bad)]).await;
        assert_error(&res, 400, "invalid_request");
    }
    assert_eq!(up.requests().len(), 3, "only the three with a token");
}

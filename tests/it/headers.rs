//! Header rules at the trust boundary, checked on the bytes: what the client
//! may not say to the upstream, what wxgate injects, hop-by-hop handling and
//! the forwarding headers. Every request here goes over a raw socket.

use crate::common::upstream::{Received, Upstream};
use crate::common::*;

async fn gateway(up: &Upstream) -> TestGateway {
    let extra = format!(
        "[[routes]]\npath = \"/opt\"\nupstream = \"{}\"\nauth = \"optional\"\n",
        up.url()
    );
    let toml = format!("{}\n{extra}", base_config(&up.url(), &nowhere()));
    TestGateway::start(&toml).await
}

/// Headers whose name could pass for identity: `x-wx-…` in any spelling.
fn lookalikes(got: &Received) -> Vec<(String, String)> {
    got.headers
        .iter()
        .filter(|(n, _)| n.replace('_', "-").starts_with("x-wx-"))
        .cloned()
        .collect()
}

fn assert_no_spoof(got: &Received) {
    for (name, value) in got.headers.iter().chain(&got.trailers) {
        assert!(
            !value.contains("spoof"),
            "{name}: {value} reached the upstream"
        );
    }
}

const SPOOFS: &[(&str, &str)] = &[
    ("X-WX-OpenID", "spoof-1"),
    ("x-wx-openid", "spoof-2"),
    ("X-Wx-OPENID", "spoof-3"),
    ("x_wx_openid", "spoof-4"),
    ("X_WX_OpenID", "spoof-5"),
    ("X-WX-Anything", "spoof-6"),
    ("X-WX-UnionID", "spoof-7"),
    ("x_wx_unionid", "spoof-8"),
    ("X-WX-AppID", "spoof-9"),
    ("X-Wx-", "spoof-10"),
];

#[tokio::test]
async fn client_identity_lookalikes_never_reach_the_upstream_on_any_route() {
    let up = Upstream::start().await;
    let gw = gateway(&up).await;
    let auth = bearer(&token(&gw.gw, "o-alice"));

    // auth = "none" and anonymous "optional": no x-wx-* header at all.
    for path in ["/public/x", "/opt/x"] {
        let mut headers = SPOOFS.to_vec();
        headers.push(("X-Benign", "kept"));
        let res = raw_request(gw.addr, "GET", path, &headers).await;
        assert_eq!(res.status, 200, "{path}: {res:?}");
        let got = up.next_request().await;
        assert_eq!(got.target, path);
        assert!(lookalikes(&got).is_empty(), "{path}: {:?}", got.headers);
        assert_no_spoof(&got);
        assert_eq!(got.header("x-benign"), Some("kept"));
    }

    // With a token: exactly the injected ones, once each.
    for path in ["/api/x", "/opt/y"] {
        let mut headers = SPOOFS.to_vec();
        headers.push(("Authorization", &auth));
        let res = raw_request(gw.addr, "GET", path, &headers).await;
        assert_eq!(res.status, 200, "{path}: {res:?}");
        let got = up.next_request().await;
        assert_eq!(got.target, path);
        assert_no_spoof(&got);
        let mut ids = lookalikes(&got);
        ids.sort();
        assert_eq!(
            ids,
            [
                ("x-wx-appid".to_owned(), APPID.to_owned()),
                ("x-wx-openid".to_owned(), "o-alice".to_owned()),
            ],
            "{path}"
        );
    }
}

#[tokio::test]
async fn the_injected_unionid_replaces_a_client_one() {
    let up = Upstream::start().await;
    let gw = gateway(&up).await;
    let auth = bearer(&token_for(&gw.gw, "o-bob", APPID, Some("u-bob")));
    let mut headers = SPOOFS.to_vec();
    headers.push(("Authorization", &auth));
    let res = raw_request(gw.addr, "GET", "/api/u", &headers).await;
    assert_eq!(res.status, 200, "{res:?}");
    let got = up.next_request().await;
    assert_no_spoof(&got);
    assert_eq!(got.header_all("x-wx-unionid"), ["u-bob"]);
    assert_eq!(got.header_all("x-wx-openid"), ["o-bob"]);
    assert_eq!(lookalikes(&got).len(), 3, "{:?}", got.headers);
}

#[tokio::test]
async fn connection_cannot_remove_the_injected_identity_but_removes_what_it_names() {
    let up = Upstream::start().await;
    let gw = gateway(&up).await;
    let auth = bearer(&token(&gw.gw, "o-alice"));
    let res = raw_request(
        gw.addr,
        "GET",
        "/api/x",
        &[
            ("Connection", "close, x-wx-openid, X-WX-AppID, x-custom"),
            ("Authorization", &auth),
            ("X-Custom", "hop"),
            ("X-Keep", "end-to-end"),
        ],
    )
    .await;
    assert_eq!(res.status, 200, "{res:?}");
    let got = up.next_request().await;
    assert_eq!(got.header_all("x-wx-openid"), ["o-alice"]);
    assert_eq!(got.header_all("x-wx-appid"), [APPID]);
    assert_eq!(got.header("x-custom"), None, "{:?}", got.headers);
    assert_eq!(got.header("x-keep"), Some("end-to-end"));
    assert_eq!(got.header("connection"), None, "{:?}", got.headers);
}

#[tokio::test]
async fn hop_by_hop_headers_are_not_forwarded() {
    let up = Upstream::start().await;
    let gw = gateway(&up).await;
    let res = raw_request(
        gw.addr,
        "GET",
        "/public/hop",
        &[
            ("Connection", "close"),
            ("Keep-Alive", "timeout=5, max=100"),
            ("Proxy-Connection", "keep-alive"),
            ("TE", "gzip"),
            ("Upgrade", "h2c"),
            ("X-End", "1"),
        ],
    )
    .await;
    assert_eq!(res.status, 200, "{res:?}");
    let got = up.next_request().await;
    for name in [
        "keep-alive",
        "proxy-connection",
        "te",
        "upgrade",
        "connection",
    ] {
        assert_eq!(got.header(name), None, "{name} in {:?}", got.headers);
    }
    assert_eq!(got.header("x-end"), Some("1"));
}

#[tokio::test]
async fn forwarding_headers_are_appended_and_set() {
    let up = Upstream::start().await;
    let gw = gateway(&up).await;
    let res = raw_request(
        gw.addr,
        "GET",
        "/public/fwd",
        &[
            ("Host", "front.example:8080"),
            ("X-Forwarded-For", "1.2.3.4"),
            ("X-Forwarded-Proto", "https"),
            ("X-Forwarded-Host", "spoofed.example"),
        ],
    )
    .await;
    assert_eq!(res.status, 200, "{res:?}");
    let got = up.next_request().await;
    assert_eq!(got.header_all("x-forwarded-for"), ["1.2.3.4, 127.0.0.1"]);
    assert_eq!(got.header_all("x-forwarded-proto"), ["http"]);
    assert_eq!(got.header_all("x-forwarded-host"), ["front.example:8080"]);
    assert_eq!(got.header_all("host"), [up.addr().to_string().as_str()]);

    // Without a client X-Forwarded-For, the peer alone.
    let res = raw_request(gw.addr, "GET", "/public/fwd2", &[]).await;
    assert_eq!(res.status, 200, "{res:?}");
    let got = up.next_request().await;
    assert_eq!(got.header_all("x-forwarded-for"), ["127.0.0.1"]);
    assert_eq!(got.header_all("x-forwarded-host"), ["gw.test"]);
}

#[tokio::test]
async fn the_upstreams_hop_by_hop_response_headers_stay_behind() {
    let up = Upstream::start().await;
    let gw = gateway(&up).await;
    let res = raw_request(gw.addr, "GET", "/public/x", &[]).await;
    assert_eq!(res.status, 200, "{res:?}");
    // The answer is the upstream's (it sets x-upstream and Keep-Alive)...
    assert_eq!(res.header("x-upstream"), Some("1"), "{res:?}");
    assert_eq!(res.json()["ok"], true);
    // ...minus its connection-level header.
    assert_eq!(res.header("keep-alive"), None, "{res:?}");
}

#[tokio::test]
async fn request_trailers_cannot_smuggle_identity() {
    let up = Upstream::start().await;
    let gw = gateway(&up).await;
    let auth = bearer(&token(&gw.gw, "o-alice"));
    let mut request = http_request(
        "POST",
        "/api/upload",
        &[
            ("Authorization", &auth),
            ("Transfer-Encoding", "chunked"),
            ("Trailer", "X-WX-OpenID, x_wx_unionid, X-Checksum"),
        ],
    );
    request.extend_from_slice(
        b"5\r\nhello\r\n6\r\n world\r\n0\r\n\
          X-WX-OpenID: spoof-trailer\r\n\
          x_wx_unionid: spoof-union\r\n\
          X-Checksum: abc123\r\n\r\n",
    );
    let res = RawResponse::parse(&raw(gw.addr, &request).await);
    assert_eq!(res.status, 200, "{res:?}");
    let got = up.next_request().await;
    assert_eq!(got.body_len, 11);
    assert_no_spoof(&got);
    assert_eq!(got.header_all("x-wx-openid"), ["o-alice"]);
    // Trailers do pass (so their absence above is the filter's doing).
    assert_eq!(
        got.trailers,
        [("x-checksum".to_owned(), "abc123".to_owned())],
        "{got:?}"
    );
}

#[tokio::test]
async fn client_address_headers_pass_only_from_trusted_proxies() {
    let up = Upstream::start().await;
    let sent = [
        ("X-Real-IP", "6.6.6.6"),
        ("Forwarded", "for=6.6.6.6;proto=https"),
    ];
    // An untrusted peer (the default): neither reaches the upstream.
    let gw = gateway(&up).await;
    let res = raw_request(gw.addr, "GET", "/public/addr", &sent).await;
    assert_eq!(res.status, 200, "{res:?}");
    let got = up.next_request().await;
    assert_eq!(got.header("x-real-ip"), None, "{:?}", got.headers);
    assert_eq!(got.header("forwarded"), None, "{:?}", got.headers);
    assert_eq!(got.header_all("x-forwarded-for"), ["127.0.0.1"]);

    // A trusted proxy's are passed on as it wrote them.
    let toml = base_config(&up.url(), &nowhere()).edit(
        "[server]\n",
        "[server]\ntrusted_proxies = [\"127.0.0.1\"]\n",
    );
    let trusted = TestGateway::start(&toml).await;
    let res = raw_request(trusted.addr, "GET", "/public/addr", &sent).await;
    assert_eq!(res.status, 200, "{res:?}");
    let got = up.next_request().await;
    assert_eq!(got.header("x-real-ip"), Some("6.6.6.6"));
    assert_eq!(got.header("forwarded"), Some("for=6.6.6.6;proto=https"));
}

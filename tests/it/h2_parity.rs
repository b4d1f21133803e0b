//! HTTP/2 clients get what HTTP/1.1 clients get: the core cases (401s with
//! their challenge and JSON body, identity injection and spoof stripping,
//! 404, 405 with `Allow`, 502, 504, login) run over HTTP/1.1 and HTTP/2
//! prior knowledge in cleartext, and over TLS with ALPN `http/1.1` and `h2`.

use std::time::Duration;

use crate::common::fake_wechat::FakeWeChat;
use crate::common::login_flow::set;
use crate::common::tls::{tls_lines, Answer, Proto, ProtoClient, TestCa};
use crate::common::upstream::Upstream;
use crate::common::*;

/// A plaintext and an HTTPS gateway serving the same config, and a client
/// for each protocol.
struct Both {
    plain: TestGateway,
    tls: TestGateway,
    ca: TestCa,
    _dir: tempfile::TempDir,
}

impl Both {
    async fn start(config: &str) -> Both {
        let ca = TestCa::new("wxgate parity CA");
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = ca.issue(1).write(dir.path());
        let plain = TestGateway::start(config).await;
        let tls = TestGateway::start(&set(config, "[server]", &tls_lines(&cert, &key))).await;
        Both {
            plain,
            tls,
            ca,
            _dir: dir,
        }
    }

    fn gateway(&self, proto: Proto) -> &TestGateway {
        if proto.tls() {
            &self.tls
        } else {
            &self.plain
        }
    }

    fn client(&self, proto: Proto) -> ProtoClient {
        ProtoClient::new(proto, self.gateway(proto).addr, Some(&self.ca))
    }

    /// `GET path` with `headers` over `proto`; asserts the answer came back
    /// in that protocol's version.
    async fn get(&self, proto: Proto, path: &str, headers: &[(&str, &str)]) -> Answer {
        self.send(proto, "GET", path, headers, "").await
    }

    async fn send(
        &self,
        proto: Proto,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &str,
    ) -> Answer {
        let answer = self.client(proto).send(method, path, headers, body).await;
        assert_eq!(answer.version, proto.version(), "{proto:?}");
        answer
    }
}

fn assert_error(answer: &Answer, proto: Proto, status: u16, code: &str) {
    assert_eq!(answer.status, status, "{proto:?}: {answer:?}");
    assert_eq!(
        answer.header("content-type"),
        Some("application/json"),
        "{proto:?}"
    );
    assert_eq!(answer.json()["error"], code, "{proto:?}: {answer:?}");
}

fn no_wechat(up: &Upstream) -> String {
    base_config(&up.url(), &nowhere())
}

#[tokio::test]
async fn missing_invalid_and_expired_tokens_are_401_with_a_challenge() {
    let up = Upstream::start().await;
    let both = Both::start(&no_wechat(&up)).await;
    let past = wxgate::auth::token::now() - 7200;
    let (expired, _) = both
        .plain
        .gw
        .snapshot()
        .keys
        .mint("o-alice", APPID, None, Duration::from_secs(600), past)
        .unwrap();
    for proto in Proto::ALL {
        let res = both.get(proto, "/api/x", &[]).await;
        assert_error(&res, proto, 401, "missing_token");
        assert_eq!(
            res.header("www-authenticate"),
            Some("Bearer realm=\"wxgate\""),
            "{proto:?}"
        );

        for (token, code) in [("a.b.c", "invalid_token"), (&expired, "token_expired")] {
            let auth = bearer(token);
            let res = both.get(proto, "/api/x", &[("authorization", &auth)]).await;
            assert_error(&res, proto, 401, code);
            let challenge = res.header("www-authenticate").unwrap_or_default();
            assert!(
                challenge.starts_with("Bearer realm=\"wxgate\"")
                    && challenge.contains("error=\"invalid_token\""),
                "{proto:?}: {challenge}"
            );
        }
    }
    assert!(up.requests().is_empty(), "{:#?}", up.requests());
}

#[tokio::test]
async fn identity_is_injected_and_spoofs_are_stripped() {
    let up = Upstream::start().await;
    let both = Both::start(&no_wechat(&up)).await;
    for proto in Proto::ALL {
        let gw = both.gateway(proto);
        let auth = bearer(&token(&gw.gw, "o-alice"));
        let res = both
            .get(
                proto,
                "/api/who?x=1",
                &[
                    ("authorization", &auth),
                    ("x-wx-openid", "o-mallory"),
                    ("x_wx_unionid", "u-mallory"),
                    ("x-wx-anything", "spoof"),
                ],
            )
            .await;
        assert_eq!(res.status, 200, "{proto:?}: {res:?}");
        assert_eq!(res.header("x-upstream"), Some("1"), "{proto:?}");
        let got = up.next_request().await;
        assert_eq!(got.target, "/api/who?x=1", "{proto:?}");
        assert_eq!(got.header_all("x-wx-openid"), ["o-alice"], "{proto:?}");
        assert_eq!(got.header_all("x-wx-appid"), [APPID], "{proto:?}");
        assert_eq!(got.header("x-wx-unionid"), None, "{proto:?}");
        assert_eq!(got.header("x_wx_unionid"), None, "{proto:?}");
        assert_eq!(got.header("x-wx-anything"), None, "{proto:?}");
        assert_eq!(got.header("authorization"), None, "{proto:?}");
        assert_eq!(
            got.header("x-forwarded-proto"),
            Some(proto.scheme()),
            "{proto:?}"
        );
        assert_eq!(
            got.header("x-forwarded-for"),
            Some("127.0.0.1"),
            "{proto:?}"
        );
    }
}

#[tokio::test]
async fn unknown_paths_are_404_and_excluded_methods_405_with_allow() {
    let up = Upstream::start().await;
    let config = format!(
        "{}\n[[routes]]\npath = \"/readonly\"\nupstream = \"{}\"\nauth = \"none\"\nmethods = [\"GET\", \"HEAD\"]\n",
        no_wechat(&up),
        up.url()
    );
    let both = Both::start(&config).await;
    for proto in Proto::ALL {
        let res = both.get(proto, "/nowhere", &[]).await;
        assert_error(&res, proto, 404, "not_found");

        let res = both.send(proto, "POST", "/readonly/x", &[], "{}").await;
        assert_error(&res, proto, 405, "method_not_allowed");
        assert_eq!(res.header("allow"), Some("GET, HEAD"), "{proto:?}");

        let res = both.get(proto, "/readonly/x", &[]).await;
        assert_eq!(res.status, 200, "{proto:?}");
    }
}

#[tokio::test]
async fn upstream_failures_are_502_and_504() {
    let up = Upstream::start().await;
    let closed = closed_port();
    let config = format!(
        "{}\n[[routes]]\npath = \"/down\"\nupstream = \"http://{closed}\"\nauth = \"none\"\n\
         [[routes]]\npath = \"/slow\"\nupstream = \"{}\"\nauth = \"none\"\ntimeout = \"200ms\"\n",
        no_wechat(&up),
        up.url()
    );
    let both = Both::start(&config).await;
    for proto in Proto::ALL {
        let res = both.get(proto, "/down/x", &[]).await;
        assert_error(&res, proto, 502, "upstream_unavailable");
        let res = both.get(proto, "/slow/hold", &[]).await;
        assert_error(&res, proto, 504, "upstream_timeout");
    }
}

#[tokio::test]
async fn login_answers_a_token_that_opens_protected_routes() {
    let fake = FakeWeChat::start().await;
    fake.add_app(APPID, APP_SECRET);
    let up = Upstream::start().await;
    let both = Both::start(&base_config(&up.url(), &fake.base_url())).await;
    for proto in Proto::ALL {
        let openid = format!("o-{proto:?}");
        let code = fake.mint_code(APPID, &openid);
        let body = serde_json::json!({ "code": code }).to_string();
        let res = both
            .send(
                proto,
                "POST",
                "/auth/login",
                &[("content-type", "application/json")],
                &body,
            )
            .await;
        assert_eq!(res.status, 200, "{proto:?}: {res:?}");
        let json = res.json();
        assert_eq!(json["token_type"], "Bearer", "{proto:?}");
        assert!(json.get("session_key").is_none(), "{proto:?}");
        let auth = bearer(json["access_token"].as_str().unwrap());

        let res = both
            .get(proto, "/api/me", &[("authorization", &auth)])
            .await;
        assert_eq!(res.status, 200, "{proto:?}: {res:?}");
        let got = up.next_request().await;
        assert_eq!(
            got.header("x-wx-openid"),
            Some(openid.as_str()),
            "{proto:?}"
        );

        let res = both
            .get(proto, "/auth/session", &[("authorization", &auth)])
            .await;
        assert_eq!(res.status, 200, "{proto:?}");
        assert_eq!(res.json()["openid"], openid.as_str(), "{proto:?}");
    }
}

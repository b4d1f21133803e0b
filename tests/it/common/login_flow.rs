//! Helpers for the login and session tests: a fake WeChat, an upstream and a
//! gateway wired together, config edits, login requests and token decoding.

#![allow(dead_code)]

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde_json::Value;

use super::fake_wechat::FakeWeChat;
use super::upstream::Upstream;
use super::{base_config, client, TestGateway, APPID, APP_SECRET};

/// A second mini-program for multi-app tests.
pub const APPID2: &str = "wxtest0000000002";
pub const APP_SECRET2: &str = "second-app-secret-do-not-leak-1a2b";

/// A fake WeChat that knows the test app, an upstream, and a gateway in front.
pub struct Setup {
    pub fake: FakeWeChat,
    pub up: Upstream,
    pub gw: TestGateway,
}

impl Setup {
    /// The base config unchanged.
    pub async fn start() -> Setup {
        Self::with(|c| c).await
    }

    /// The base config passed through `edit` first.
    pub async fn with(edit: impl FnOnce(String) -> String) -> Setup {
        let fake = FakeWeChat::start().await;
        fake.add_app(APPID, APP_SECRET);
        let up = Upstream::start().await;
        let gw = TestGateway::start(&edit(base_config(&up.url(), &fake.base_url()))).await;
        Setup { fake, up, gw }
    }

    pub async fn login(&self, code: &str) -> Answer {
        login(&self.gw, serde_json::json!({ "code": code })).await
    }

    /// POSTs `body` as-is to the login endpoint as `application/json`.
    pub async fn post_login_json(&self, body: impl Into<String>) -> reqwest::Response {
        client()
            .post(self.gw.url("/auth/login"))
            .header("content-type", "application/json")
            .body(body.into())
            .send()
            .await
            .unwrap()
    }

    /// Mints a code for `openid` and logs in with it; panics unless 200.
    pub async fn login_as(&self, openid: &str) -> String {
        let code = self.fake.mint_code(APPID, openid);
        let answer = self.login(&code).await;
        assert_eq!(answer.status, 200, "login as {openid}: {}", answer.body);
        answer.token()
    }
}

/// Inserts `line` right after the table header `table` (e.g. `"[token]"`).
pub fn set(config: &str, table: &str, line: &str) -> String {
    let header = format!("\n{table}\n");
    assert!(config.contains(&header), "no {table} in the config");
    config.replacen(&header, &format!("{header}{line}\n"), 1)
}

/// Adds a second `[[apps]]` entry.
pub fn with_app(config: &str, appid: &str, secret: &str) -> String {
    config.replacen(
        "\n[auth]\n",
        &format!("\n[[apps]]\nappid = \"{appid}\"\nsecret = \"{secret}\"\n\n[auth]\n"),
        1,
    )
}

/// Sets `[auth] login_rate_limit`.
pub fn rate_limit(config: &str, rate: &str) -> String {
    config.replacen(
        "login_rate_limit = \"off\"",
        &format!("login_rate_limit = \"{rate}\""),
        1,
    )
}

/// A response, read in full.
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: String,
}

impl Answer {
    pub async fn read(res: reqwest::Response) -> Answer {
        let status = res.status().as_u16();
        let headers = res.headers().clone();
        let body = res.text().await.expect("response body");
        Answer {
            status,
            headers,
            body,
        }
    }

    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", self.body))
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(|v| v.to_str().expect("text"))
    }

    /// The `error` code of a JSON error answer.
    pub fn error(&self) -> String {
        self.json()["error"]
            .as_str()
            .unwrap_or_else(|| panic!("no error code in {:?}", self.body))
            .to_owned()
    }

    /// Asserts status and error code, and the JSON error shape.
    pub fn assert_error(&self, status: u16, code: &str) {
        assert_eq!(
            (self.status, self.error().as_str()),
            (status, code),
            "{}",
            self.body
        );
        assert_eq!(self.header("content-type"), Some("application/json"));
        assert!(self.json()["message"].is_string(), "{}", self.body);
    }

    pub fn token(&self) -> String {
        self.json()["access_token"]
            .as_str()
            .unwrap_or_else(|| panic!("no access_token in {:?}", self.body))
            .to_owned()
    }

    /// The one token that every answer in `answers` carries (each a 200):
    /// what submissions of one code must all get.
    pub fn one_token(answers: &[Answer]) -> String {
        let tokens: Vec<String> = answers
            .iter()
            .map(|a| {
                assert_eq!(a.status, 200, "{}", a.body);
                a.token()
            })
            .collect();
        assert!(
            tokens.iter().all(|t| *t == tokens[0]),
            "one code, several tokens: {tokens:?}"
        );
        tokens[0].clone()
    }

    /// Every header value and the body, for leak checks.
    pub fn everything(&self) -> String {
        let mut all = String::new();
        for (name, value) in &self.headers {
            all.push_str(name.as_str());
            all.push_str(": ");
            all.push_str(&String::from_utf8_lossy(value.as_bytes()));
            all.push('\n');
        }
        all.push_str(&self.body);
        all
    }
}

/// `POST /auth/login` with a JSON body.
pub async fn login(gw: &TestGateway, body: Value) -> Answer {
    let res = client()
        .post(gw.url("/auth/login"))
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .expect("login request");
    Answer::read(res).await
}

/// `GET` on the gateway with an optional bearer token.
pub async fn get(gw: &TestGateway, path: &str, token: Option<&str>) -> Answer {
    let mut req = client().get(gw.url(path));
    if let Some(token) = token {
        req = req.bearer_auth(token);
    }
    Answer::read(req.send().await.expect("request")).await
}

/// `POST /auth/logout` with an optional bearer token.
pub async fn logout(gw: &TestGateway, token: Option<&str>) -> Answer {
    let mut req = client().post(gw.url("/auth/logout"));
    if let Some(token) = token {
        req = req.bearer_auth(token);
    }
    Answer::read(req.send().await.expect("request")).await
}

/// The JOSE header and the claims of a compact JWS (not verified).
pub fn decode(token: &str) -> (Value, Value) {
    let parts: Vec<&str> = token.split('.').collect();
    assert_eq!(parts.len(), 3, "not a compact JWS: {token}");
    let part = |s: &str| -> Value {
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(s).expect("base64url")).expect("JSON")
    };
    (part(parts[0]), part(parts[1]))
}

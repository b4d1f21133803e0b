//! Helpers for the internal API tests: a fake WeChat, a gateway with an
//! `[internal]` listener, and a client that calls it with the Bearer token.

#![allow(dead_code)]

use super::fake_wechat::FakeWeChat;
use super::login_flow::Setup;
use super::prom::{scrape, Scrape};
use super::{client, TestGateway, APPID};

/// The internal API's token in these tests.
pub const INTERNAL_TOKEN: &str = "internal-token-do-not-leak-5a6b7c8d";

/// A gateway whose `[internal]` table is `internal` (appended to the base
/// config), with the fake WeChat and an upstream.
pub struct Internal {
    pub setup: Setup,
    pub http: reqwest::Client,
}

/// `[internal]` with the test token and the default `allow`.
pub fn with_token() -> String {
    format!("[internal]\ntoken = \"{INTERNAL_TOKEN}\"\n")
}

/// One answer of the internal API, whole.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub content_type: Option<String>,
    pub cache_control: Option<String>,
    pub body: Vec<u8>,
}

impl Reply {
    pub async fn read(res: reqwest::Response) -> Reply {
        let header = |name: &str| {
            res.headers()
                .get(name)
                .map(|v| v.to_str().unwrap().to_owned())
        };
        Reply {
            status: res.status().as_u16(),
            content_type: header("content-type"),
            cache_control: header("cache-control"),
            body: res.bytes().await.unwrap().to_vec(),
        }
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "not JSON ({e}): {:?} {}",
                self.status,
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// A JSON error with this status and code.
    pub fn assert_error(&self, status: u16, code: &str) {
        assert_eq!(self.status, status, "{}", self.text());
        assert_eq!(self.content_type.as_deref(), Some("application/json"));
        assert_eq!(self.json()["error"], code, "{}", self.text());
    }

    /// The token of a 200 access_token answer.
    pub fn token(&self) -> String {
        assert_eq!(self.status, 200, "{}", self.text());
        self.json()["access_token"].as_str().unwrap().to_owned()
    }
}

impl Internal {
    pub async fn start(internal: &str) -> Internal {
        Self::with(internal, |c| c).await
    }

    /// Like [`Internal::start`], the config passed through `edit` last.
    pub async fn with(internal: &str, edit: impl FnOnce(String) -> String) -> Internal {
        let internal = internal.to_owned();
        let setup = Setup::with(move |c| edit(format!("{c}\n{internal}"))).await;
        Internal {
            setup,
            http: client(),
        }
    }

    pub fn fake(&self) -> &FakeWeChat {
        &self.setup.fake
    }

    pub fn gw(&self) -> &TestGateway {
        &self.setup.gw
    }

    /// `/v1/apps/{APPID}/{rest}` on the internal listener.
    pub fn url(&self, rest: &str) -> String {
        self.gw().internal_url(&format!("/v1/apps/{APPID}/{rest}"))
    }

    /// A request with the Bearer token.
    pub fn request(&self, method: reqwest::Method, rest: &str) -> reqwest::RequestBuilder {
        self.http
            .request(method, self.url(rest))
            .bearer_auth(INTERNAL_TOKEN)
    }

    pub async fn get(&self, rest: &str) -> Reply {
        Reply::read(
            self.request(reqwest::Method::GET, rest)
                .send()
                .await
                .unwrap(),
        )
        .await
    }

    pub async fn post_json(&self, rest: &str, body: serde_json::Value) -> Reply {
        let res = self
            .request(reqwest::Method::POST, rest)
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
            .await
            .unwrap();
        Reply::read(res).await
    }

    pub async fn access_token(&self) -> String {
        self.get("access_token").await.token()
    }

    pub async fn metrics(&self) -> Scrape {
        scrape(&self.gw().admin_url("/metrics")).await
    }

    /// `wxgate_internal_requests_total{endpoint,status}`.
    pub async fn requests(&self, endpoint: &str, status: &str) -> f64 {
        self.metrics().await.value(
            "wxgate_internal_requests_total",
            &[("endpoint", endpoint), ("status", status)],
        )
    }

    /// `wxgate_wechat_access_token_refreshes_total{appid=APPID,result}`.
    pub async fn refreshes(&self, result: &str) -> f64 {
        self.metrics().await.value(
            "wxgate_wechat_access_token_refreshes_total",
            &[("appid", APPID), ("result", result)],
        )
    }
}

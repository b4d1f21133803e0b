//! WeChat's server APIs that the internal API calls on a backend's behalf:
//! `stable_token` (which takes the AppSecret), and the calls that take an
//! access_token (`checksession`, `getuserphonenumber`, and any path the
//! relay forwards). Same client, bounds and redaction as code2session; the
//! access_token travels in the query, which no error or log line shows.

use bytes::Bytes;
use http::header::HeaderValue;
use serde::Deserialize;

use super::{classify, errcode, read_capped, WeChat, WeChatError};
use crate::error::Error;
use crate::secret::Secret;

/// JSON answers of the APIs wxgate parses itself are small.
const MAX_JSON_ANSWER: usize = 64 * 1024;

/// The errcodes that mean "this access_token is not (or no longer) good":
/// invalid or not the latest, expired, malformed.
pub const TOKEN_REFUSED: [i64; 3] = [40001, 42001, 40014];

/// A token `stable_token` handed out.
#[derive(Debug, Clone)]
pub struct Issued {
    pub token: Secret,
    /// Seconds, as WeChat said.
    pub expires_in: u64,
}

/// A relayed answer, whole: status, `Content-Type` and body as WeChat sent
/// them.
#[derive(Debug, Clone)]
pub struct Relayed {
    pub status: u16,
    pub content_type: Option<HeaderValue>,
    pub body: Bytes,
}

impl Relayed {
    /// The answer's errcode, if it is a JSON object with one. Binary
    /// answers (an image) are not parsed.
    pub fn errcode(&self) -> Option<i64> {
        let body = self.body.trim_ascii_start();
        if !body.starts_with(b"{") || body.len() > MAX_JSON_ANSWER {
            return None;
        }
        serde_json::from_slice::<Errcode>(body).ok()?.errcode
    }
}

#[derive(Deserialize)]
struct Errcode {
    #[serde(default, deserialize_with = "errcode")]
    errcode: Option<i64>,
}

#[derive(Deserialize)]
struct TokenAnswer {
    #[serde(default, deserialize_with = "errcode")]
    errcode: Option<i64>,
    access_token: Option<String>,
    expires_in: Option<u64>,
}

impl WeChat {
    /// `POST /cgi-bin/stable_token`: normal mode hands back the token in
    /// force; `force_refresh` issues a new one.
    pub async fn stable_token(
        &self,
        appid: &str,
        secret: &Secret,
        force_refresh: bool,
    ) -> Result<Issued, WeChatError> {
        let body = serde_json::json!({
            "grant_type": "client_credential",
            "appid": appid,
            "secret": secret.expose(),
            "force_refresh": force_refresh,
        });
        let request = self
            .http()
            .post(self.url("cgi-bin/stable_token")?)
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(body.to_string());
        let answer = send_json(request).await?;
        let answer: TokenAnswer = serde_json::from_slice(&answer)
            .map_err(|_| WeChatError::Unavailable("answer is not JSON".into()))?;
        match answer.errcode {
            Some(0) | None => {}
            Some(code) => return Err(WeChatError::Errcode(code)),
        }
        match (answer.access_token, answer.expires_in) {
            (Some(token), Some(expires_in)) if !token.is_empty() && expires_in > 0 => Ok(Issued {
                token: Secret::new(token),
                expires_in,
            }),
            _ => Err(WeChatError::Unavailable(
                "answer has no access_token or expires_in".into(),
            )),
        }
    }

    /// `GET /wxa/checksession`: errcode 0 when `signature` was made with
    /// the user's current session_key, 87009 when not.
    pub async fn check_session(
        &self,
        token: &Secret,
        openid: &str,
        signature: &str,
    ) -> Result<serde_json::Value, WeChatError> {
        let mut url = self.url("wxa/checksession")?;
        url.query_pairs_mut()
            .append_pair("access_token", token.expose())
            .append_pair("openid", openid)
            .append_pair("signature", signature)
            .append_pair("sig_method", "hmac_sha256");
        json_answer(send_json(self.http().get(url)).await?)
    }

    /// `POST /wxa/business/getuserphonenumber` with a getPhoneNumber code.
    pub async fn phone_number(
        &self,
        token: &Secret,
        code: &str,
    ) -> Result<serde_json::Value, WeChatError> {
        let mut url = self.url("wxa/business/getuserphonenumber")?;
        url.query_pairs_mut()
            .append_pair("access_token", token.expose());
        let body = serde_json::json!({ "code": code }).to_string();
        let request = self
            .http()
            .post(url)
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(body);
        json_answer(send_json(request).await?)
    }

    /// Sends a backend's request to `{api_base}/{path}?{query}&access_token=…`
    /// and reads the whole answer, refused beyond `cap` bytes. `path` and
    /// `query` were checked by the caller; `query` has no access_token.
    pub async fn relay(
        &self,
        request: &RelayRequest,
        token: &Secret,
        cap: usize,
    ) -> Result<Relayed, WeChatError> {
        let mut url = self.url(&request.path)?;
        url.set_query((!request.query.is_empty()).then_some(request.query.as_str()));
        url.query_pairs_mut()
            .append_pair("access_token", token.expose());
        let mut builder = self
            .http()
            .request(request.method.clone(), url)
            .body(request.body.clone());
        if let Some(content_type) = &request.content_type {
            builder = builder.header(http::header::CONTENT_TYPE, content_type);
        }
        let mut response = builder.send().await.map_err(classify)?;
        let status = response.status().as_u16();
        let content_type = response.headers().get(http::header::CONTENT_TYPE).cloned();
        let body = read_capped(&mut response, cap).await?;
        Ok(Relayed {
            status,
            content_type,
            body: body.into(),
        })
    }
}

/// What the relay sends, kept whole so that a retry sends the same.
#[derive(Debug, Clone)]
pub struct RelayRequest {
    pub method: http::Method,
    /// Checked by the caller: no leading `/`, no dot segment, nothing that
    /// needs the AppSecret.
    pub path: String,
    /// The caller's query without any `access_token` parameter.
    pub query: String,
    pub content_type: Option<HeaderValue>,
    pub body: Bytes,
}

/// Sends `request` and reads an answer meant to be JSON: an HTTP error
/// status is WeChat being unavailable.
async fn send_json(request: reqwest::RequestBuilder) -> Result<Vec<u8>, WeChatError> {
    let mut response = request.send().await.map_err(classify)?;
    let status = response.status();
    if !status.is_success() {
        return Err(WeChatError::Unavailable(format!(
            "HTTP {}",
            status.as_u16()
        )));
    }
    read_capped(&mut response, MAX_JSON_ANSWER).await
}

/// A JSON object whose errcode is absent or 0; any other errcode is the
/// error.
fn json_answer(body: Vec<u8>) -> Result<serde_json::Value, WeChatError> {
    let value: serde_json::Value = serde_json::from_slice(&body)
        .ok()
        .filter(serde_json::Value::is_object)
        .ok_or_else(|| WeChatError::Unavailable("answer is not a JSON object".into()))?;
    let code = serde_json::from_value::<Errcode>(value.clone())
        .map_err(|_| WeChatError::Unavailable("errcode is not a number".into()))?
        .errcode;
    match code {
        Some(0) | None => Ok(value),
        Some(code) => Err(WeChatError::Errcode(code)),
    }
}

/// The internal API's reading of a WeChat failure (other than the errcodes
/// each endpoint handles itself).
pub fn api_error(e: &WeChatError) -> Error {
    match e {
        WeChatError::Errcode(-1) => Error::WeChatUnavailable,
        // Wrong appid or secret, a missing parameter, or (40164) a caller
        // IP not on the app's whitelist: the operator must act.
        WeChatError::Errcode(code @ (40013 | 40125 | 40164 | 41000..=41999)) => {
            Error::Misconfigured(*code)
        }
        WeChatError::Errcode(code) => Error::WeChatErrcode(*code),
        WeChatError::Timeout => Error::WeChatTimeout,
        WeChatError::Unavailable(_) => Error::WeChatUnavailable,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relayed_errcodes() {
        let answer = |body: &'static [u8]| Relayed {
            status: 200,
            content_type: None,
            body: Bytes::from_static(body),
        };
        assert_eq!(
            answer(br#" {"errcode":40001,"errmsg":"x"}"#).errcode(),
            Some(40001)
        );
        assert_eq!(answer(br#"{"errcode":"42001"}"#).errcode(), Some(42001));
        assert_eq!(answer(br#"{"errcode":0}"#).errcode(), Some(0));
        assert_eq!(
            answer(b"\x89PNG\r\n\x1a\n{\"errcode\":40001}").errcode(),
            None
        );
        assert_eq!(answer(br#"{"errcode":40001"#).errcode(), None);
        assert_eq!(answer(br#"{"ok":true}"#).errcode(), None);
    }

    #[test]
    fn json_answers() {
        assert!(json_answer(br#"{"errcode":0,"errmsg":"ok"}"#.to_vec()).is_ok());
        assert!(matches!(
            json_answer(br#"{"errcode":"87009"}"#.to_vec()),
            Err(WeChatError::Errcode(87009))
        ));
        for bad in [&b"<html>"[..], b"[1]", br#"{"errcode":"x"}"#] {
            assert!(matches!(
                json_answer(bad.to_vec()),
                Err(WeChatError::Unavailable(_))
            ));
        }
    }
}

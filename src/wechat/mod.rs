//! The code2session client. Every call is bounded (connect, total time,
//! answer size), follows no redirect, sends no Referer, and never lets the
//! request URL (which carries `secret=`) into an error or a log line. The
//! answer is parsed as JSON whatever its Content-Type, with `errcode` as a
//! number or a string.

use std::time::Duration;

use serde::de::{self, Deserializer};
use serde::Deserialize;

use crate::auth::token::id_header;
use crate::config::WeChatConfig;
use crate::secret::Secret;

/// Answers larger than this are not WeChat's.
const MAX_ANSWER_BYTES: usize = 64 * 1024;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// A successful exchange.
#[derive(Debug, Clone)]
pub struct CodeSession {
    pub openid: String,
    pub session_key: Secret,
    pub unionid: Option<String>,
}

/// Why an exchange did not yield a session. No variant carries a URL.
#[derive(Debug, Clone, thiserror::Error)]
pub enum WeChatError {
    #[error("WeChat errcode {0}")]
    Errcode(i64),
    #[error("WeChat timed out")]
    Timeout,
    #[error("WeChat unavailable: {0}")]
    Unavailable(String),
}

#[derive(Clone)]
pub struct WeChat {
    http: reqwest::Client,
    endpoint: reqwest::Url,
}

impl WeChat {
    pub fn new(config: &WeChatConfig) -> Result<WeChat, String> {
        // reqwest is built without a default crypto provider; ours is ring.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT.min(config.timeout))
            .timeout(config.timeout)
            .redirect(reqwest::redirect::Policy::none())
            .referer(false)
            .user_agent(concat!("wxgate/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| format!("cannot build the WeChat client: {e}"))?;
        let endpoint = format!("{}/sns/jscode2session", config.api_base)
            .parse()
            .map_err(|e| format!("wechat.api_base: {e}"))?;
        Ok(WeChat { http, endpoint })
    }

    /// One exchange of `code`, never retried: a retry of a code that reached
    /// WeChat would only earn 40163.
    pub async fn code2session(
        &self,
        appid: &str,
        secret: &Secret,
        code: &str,
    ) -> Result<CodeSession, WeChatError> {
        let mut url = self.endpoint.clone();
        url.query_pairs_mut()
            .append_pair("appid", appid)
            .append_pair("secret", secret.expose())
            .append_pair("js_code", code)
            .append_pair("grant_type", "authorization_code");
        let mut response = self.http.get(url).send().await.map_err(classify)?;
        let status = response.status();
        if !status.is_success() {
            return Err(WeChatError::Unavailable(format!(
                "HTTP {}",
                status.as_u16()
            )));
        }
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(classify)? {
            if body.len() + chunk.len() > MAX_ANSWER_BYTES {
                return Err(WeChatError::Unavailable("answer too large".into()));
            }
            body.extend_from_slice(&chunk);
        }
        parse_answer(&body)
    }
}

/// Describes a transport error without its URL.
fn classify(e: reqwest::Error) -> WeChatError {
    if e.is_timeout() {
        return WeChatError::Timeout;
    }
    let e = e.without_url();
    let mut text = e.to_string();
    let mut source = std::error::Error::source(&e);
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    WeChatError::Unavailable(redact(&text))
}

/// Belt and braces: no `secret=` value survives in text bound for a log.
fn redact(text: &str) -> String {
    match text.find("secret=") {
        None => text.to_owned(),
        Some(i) => {
            let end = text[i..]
                .find(['&', ' ', ')'])
                .map_or(text.len(), |e| i + e);
            format!("{}secret=***{}", &text[..i], redact(&text[end..]))
        }
    }
}

#[derive(Deserialize)]
struct Answer {
    #[serde(default, deserialize_with = "errcode")]
    errcode: Option<i64>,
    #[serde(default)]
    openid: Option<String>,
    #[serde(default)]
    session_key: Option<String>,
    #[serde(default)]
    unionid: Option<String>,
}

/// `errcode` as a number or a numeric string.
fn errcode<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Code {
        Int(i64),
        Text(String),
    }
    match Option::<Code>::deserialize(d)? {
        None => Ok(None),
        Some(Code::Int(n)) => Ok(Some(n)),
        Some(Code::Text(s)) => s
            .trim()
            .parse()
            .map(Some)
            .map_err(|_| de::Error::custom("errcode is not a number")),
    }
}

/// Success is no errcode (or 0) and a non-empty openid and session_key, each
/// safe to put in a header.
pub fn parse_answer(body: &[u8]) -> Result<CodeSession, WeChatError> {
    let answer: Answer = serde_json::from_slice(body)
        .map_err(|_| WeChatError::Unavailable("answer is not JSON".into()))?;
    match answer.errcode {
        Some(0) | None => {}
        Some(code) => return Err(WeChatError::Errcode(code)),
    }
    let openid = answer
        .openid
        .filter(|o| id_header(o).is_some())
        .ok_or_else(|| WeChatError::Unavailable("answer has no usable openid".into()))?;
    let session_key = answer
        .session_key
        .filter(|k| !k.is_empty())
        .ok_or_else(|| WeChatError::Unavailable("answer has no session_key".into()))?;
    let unionid = match answer.unionid {
        Some(u) if u.is_empty() => None,
        Some(u) if id_header(&u).is_none() => {
            return Err(WeChatError::Unavailable(
                "answer has an unusable unionid".into(),
            ))
        }
        other => other,
    };
    Ok(CodeSession {
        openid,
        session_key: Secret::new(session_key),
        unionid,
    })
}

/// The simulated exchange of `[dev] simulate_wechat`: code `dev-<openid>`
/// logs in as `<openid>`; anything else is 40029.
pub fn simulate(code: &str) -> Result<CodeSession, WeChatError> {
    let openid = code
        .strip_prefix("dev-")
        .filter(|o| id_header(o).is_some())
        .ok_or(WeChatError::Errcode(40029))?;
    let mut key = [0u8; 16];
    getrandom::fill(&mut key).map_err(|_| WeChatError::Unavailable("no randomness".into()))?;
    use base64::Engine;
    Ok(CodeSession {
        openid: openid.to_owned(),
        session_key: Secret::new(base64::engine::general_purpose::STANDARD.encode(key)),
        unionid: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tolerant_parsing() {
        let ok = parse_answer(
            br#"{"session_key":"a2V5a2V5a2V5a2V5a2V5a2V5","openid":"o1","unionid":"u1","extra":1}"#,
        )
        .unwrap();
        assert_eq!(
            (ok.openid.as_str(), ok.unionid.as_deref()),
            ("o1", Some("u1"))
        );
        let zero = parse_answer(
            br#"{"errcode":0,"errmsg":"ok","session_key":"k","openid":"o","expires_in":7200}"#,
        )
        .unwrap();
        assert_eq!(zero.openid, "o");
        assert!(matches!(
            parse_answer(br#"{"errcode":40029,"errmsg":"invalid code"}"#),
            Err(WeChatError::Errcode(40029))
        ));
        assert!(matches!(
            parse_answer(br#"{"errcode":"40163","errmsg":"code been used"}"#),
            Err(WeChatError::Errcode(40163))
        ));
        assert!(matches!(
            parse_answer(br#"{"errcode":-1}"#),
            Err(WeChatError::Errcode(-1))
        ));
        for bad in [
            &b"<html>502</html>"[..],
            br#"{"session_key":"k""#,
            br#"{"session_key":"","openid":"o"}"#,
            br#"{"session_key":"k","openid":""}"#,
            br#"{"session_key":"k"}"#,
            br#"{"session_key":"k","openid":"o\r\nX-WX-OpenID: admin"}"#,
            br#"{"session_key":"k","openid":"o","unionid":"u\nx"}"#,
            br#"{"errcode":"abc"}"#,
        ] {
            assert!(
                matches!(parse_answer(bad), Err(WeChatError::Unavailable(_))),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn redaction() {
        assert_eq!(
            redact("GET /x?appid=a&secret=s3cr3t&js_code=c"),
            "GET /x?appid=a&secret=***&js_code=c"
        );
        assert_eq!(redact("secret=abc secret=def"), "secret=*** secret=***");
    }

    #[test]
    fn simulated_codes() {
        assert_eq!(simulate("dev-alice").unwrap().openid, "alice");
        assert!(matches!(
            simulate("real-code"),
            Err(WeChatError::Errcode(40029))
        ));
        assert!(matches!(simulate("dev-"), Err(WeChatError::Errcode(40029))));
    }
}

//! wxgate's own endpoints: login (code → WeChat → session store → token),
//! session (the server side of `wx.checkSession`) and logout.
//!
//! One WeChat call per code, across replicas too: see `flight.rs`.

pub mod ratelimit;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{HeaderValue, CACHE_CONTROL, CONTENT_LENGTH, CONTENT_TYPE, REFERER};
use http::{Method, Response, StatusCode};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use serde::Deserialize;

use crate::auth;
use crate::auth::token;
use crate::error::Error;
use crate::http::body::Body;
use crate::http::headers::client_ip;
use crate::state::{ConnInfo, Gateway, Snapshot};
use crate::store::CodeOutcome;
use crate::wechat::WeChatError;
use flight::now_ms;

mod flight;

/// The login body is tiny: `{"code": "...", "appid": "..."}`.
pub const MAX_LOGIN_BODY: usize = 4 * 1024;
/// Longest code accepted (WeChat's are 32 characters).
const MAX_CODE_LEN: usize = 128;

#[derive(Deserialize)]
struct LoginRequest {
    code: serde_json::Value,
    #[serde(default)]
    appid: Option<String>,
}

pub async fn login(
    gw: &Gateway,
    snap: &Arc<Snapshot>,
    parts: http::request::Parts,
    body: Incoming,
    conn: &ConnInfo,
) -> Result<Response<Body>, Error> {
    if parts.method != Method::POST {
        return Err(Error::MethodNotAllowed(HeaderValue::from_static("POST")));
    }
    if let Some(limiter) = &snap.login_limiter {
        let ip = client_ip(
            conn.peer,
            &parts.headers,
            &snap.config.server.trusted_proxies,
        );
        if let Err(wait) = gw.store().rate_check(limiter, ip).await? {
            return Err(Error::RateLimited {
                retry_after_secs: wait.as_secs_f64().ceil() as u64,
            });
        }
    }
    let is_json = parts
        .headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("application/json"));
    if !is_json {
        return Err(Error::InvalidRequest(
            "Content-Type must be application/json",
        ));
    }
    let declared = parts
        .headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if declared.is_some_and(|n| n > MAX_LOGIN_BODY as u64) {
        return Err(Error::PayloadTooLarge);
    }
    let bytes = read_body(body, snap.config.server.header_timeout).await?;
    let request = parse_request(&bytes)?;
    let code = valid_code(&request.code)?;
    let appid = select_app(snap, request.appid.as_deref(), &parts.headers)?;

    // A token that could not be revoked is not handed out.
    gw.store().can_log_in()?;
    let outcome = flight::exchange_once(gw, snap, appid, code).await?;
    match outcome {
        CodeOutcome::Token {
            access_token,
            jti,
            lifetime,
            issued_ms,
        } => {
            // Logged out since: the code's session is over, and WeChat would
            // answer 40163 to the code now.
            if gw.store().is_revoked(&jti)? {
                return Err(Error::CodeUsed);
            }
            let body = serde_json::json!({
                "access_token": access_token.expose(),
                "token_type": "Bearer",
                "expires_in": lifetime.saturating_sub(now_ms().saturating_sub(issued_ms) / 1000),
            });
            Ok(json_response(StatusCode::OK, body.to_string()))
        }
        CodeOutcome::Refused(error) => Err(error),
    }
}

/// The body must be a JSON object: serde would read a `LoginRequest` from an
/// array too (`["dev-x"]` logged in as `x`), so the object is parsed first.
fn parse_request(bytes: &[u8]) -> Result<LoginRequest, Error> {
    let bad = || Error::InvalidRequest("the body must be a JSON object with a \"code\"");
    let object: serde_json::Map<String, serde_json::Value> =
        serde_json::from_slice(bytes).map_err(|_| bad())?;
    LoginRequest::deserialize(serde_json::Value::Object(object)).map_err(|_| bad())
}

async fn read_body(body: Incoming, timeout: Duration) -> Result<Bytes, Error> {
    let collect = Limited::new(body, MAX_LOGIN_BODY).collect();
    match tokio::time::timeout(timeout, collect).await {
        Err(_) => Err(Error::InvalidRequest(
            "the request body was not received in time",
        )),
        Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => Err(Error::PayloadTooLarge),
        Ok(Err(_)) => Err(Error::InvalidRequest("the request body could not be read")),
        Ok(Ok(collected)) => Ok(collected.to_bytes()),
    }
}

/// A code is checked before WeChat sees it: a string of sane length and
/// characters (WeChat's are 32 URL-safe characters).
fn valid_code(code: &serde_json::Value) -> Result<&str, Error> {
    let code = code
        .as_str()
        .ok_or(Error::InvalidRequest("\"code\" must be a string"))?;
    let ok = !code.is_empty()
        && code.len() <= MAX_CODE_LEN
        && code
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.~+/=".contains(&b));
    if ok {
        Ok(code)
    } else {
        Err(Error::InvalidRequest(
            "\"code\" is empty, too long or has invalid characters",
        ))
    }
}

/// One app: that one. Several: `appid` in the body, else the Referer that
/// WeChat sets on `wx.request`. The Referer selects, it never authenticates.
fn select_app<'a>(
    snap: &'a Snapshot,
    asked: Option<&str>,
    headers: &http::HeaderMap,
) -> Result<&'a str, Error> {
    let apps = &snap.config.apps;
    let find = |appid: &str| {
        apps.iter()
            .find(|a| a.appid == appid)
            .map(|a| a.appid.as_str())
    };
    if let Some(asked) = asked {
        return find(asked).ok_or(Error::InvalidRequest("unknown appid"));
    }
    if apps.len() == 1 {
        return Ok(&apps[0].appid);
    }
    headers
        .get(REFERER)
        .and_then(|v| v.to_str().ok())
        .and_then(referer_appid)
        .and_then(find)
        .ok_or(Error::InvalidRequest(
            "several apps are configured: send \"appid\" or the WeChat Referer",
        ))
}

/// `https://servicewechat.com/{appid}/{version}/page-frame.html` → appid.
pub fn referer_appid(referer: &str) -> Option<&str> {
    let rest = referer.strip_prefix("https://servicewechat.com/")?;
    let mut parts = rest.split('/');
    let (appid, _version, page) = (parts.next()?, parts.next()?, parts.next()?);
    (page == "page-frame.html" && parts.next().is_none() && !appid.is_empty()).then_some(appid)
}

/// The contract's table from WeChat errcode to our error.
pub fn map_wechat_error(e: &WeChatError) -> Error {
    match e {
        WeChatError::Errcode(40029) => Error::InvalidCode,
        WeChatError::Errcode(40163) => Error::CodeUsed,
        WeChatError::Errcode(40226) => Error::UserBlocked,
        WeChatError::Errcode(45011) => Error::WeChatRateLimited,
        WeChatError::Errcode(-1) => Error::WeChatUnavailable,
        WeChatError::Errcode(code @ (40013 | 40125 | 41000..=41999)) => Error::Misconfigured(*code),
        WeChatError::Errcode(code) => Error::WeChatErrcode(*code),
        WeChatError::Timeout => Error::WeChatTimeout,
        WeChatError::Unavailable(_) => Error::WeChatUnavailable,
    }
}

/// `GET {session_path}`: who the token is for, and for how long.
pub async fn session(
    gw: &Gateway,
    snap: &Snapshot,
    parts: &http::request::Parts,
) -> Result<Response<Body>, Error> {
    if parts.method != Method::GET && parts.method != Method::HEAD {
        return Err(Error::MethodNotAllowed(HeaderValue::from_static(
            "GET, HEAD",
        )));
    }
    let verified = authenticate(gw, snap, parts).await?;
    let mut body = serde_json::json!({
        "openid": verified.openid_str(),
        "appid": verified.appid_str(),
        "expires_in": verified.exp.saturating_sub(token::now()),
    });
    let unionid = match verified.unionid_str() {
        Some(u) => Some(u.to_owned()),
        None => gw
            .store()
            .session(verified.appid_str(), verified.openid_str())
            .await?
            .and_then(|s| s.unionid),
    };
    if let Some(unionid) = unionid {
        body["unionid"] = unionid.into();
    }
    Ok(json_response(StatusCode::OK, body.to_string()))
}

/// `POST {logout_path}`: the token is refused from now on and the stored
/// session_key is dropped.
pub async fn logout(
    gw: &Gateway,
    snap: &Snapshot,
    parts: &http::request::Parts,
) -> Result<Response<Body>, Error> {
    if parts.method != Method::POST {
        return Err(Error::MethodNotAllowed(HeaderValue::from_static("POST")));
    }
    let verified = authenticate(gw, snap, parts).await?;
    // 204 only once the revocation is stored (in Redis, for every replica).
    gw.store()
        .end_session(
            verified.appid_str(),
            verified.openid_str(),
            &verified.jti,
            verified.exp,
        )
        .await?;
    tracing::info!(
        appid = %verified.appid_str(),
        openid = snap.openid_log.field(verified.openid_str()),
        "logout"
    );
    let mut response = Response::new(Body::empty());
    *response.status_mut() = StatusCode::NO_CONTENT;
    Ok(response)
}

async fn authenticate(
    gw: &Gateway,
    snap: &Snapshot,
    parts: &http::request::Parts,
) -> Result<Arc<token::Verified>, Error> {
    let token = auth::extract_token(&parts.headers, &snap.config.auth.token_header)?
        .ok_or(Error::MissingToken)?;
    auth::verify(snap, gw.store(), token, None).await
}

fn json_response(status: StatusCode, body: String) -> Response<Body> {
    let mut response = Response::new(Body::full(body));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    // RFC 6749 §5.1: answers that carry tokens are not cached.
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn referer_parsing() {
        assert_eq!(
            referer_appid("https://servicewechat.com/wxabc/0/page-frame.html"),
            Some("wxabc")
        );
        assert_eq!(
            referer_appid("https://servicewechat.com/wxabc/devtools/page-frame.html"),
            Some("wxabc")
        );
        assert_eq!(
            referer_appid("http://servicewechat.com/wxabc/0/page-frame.html"),
            None
        );
        assert_eq!(
            referer_appid("https://servicewechat.com.evil/wxabc/0/page-frame.html"),
            None
        );
        assert_eq!(
            referer_appid("https://servicewechat.com/wxabc/0/other.html"),
            None
        );
        assert_eq!(
            referer_appid("https://servicewechat.com//0/page-frame.html"),
            None
        );
    }

    #[test]
    fn code_checks() {
        assert!(valid_code(&"081aBc-_9".into()).is_ok());
        for bad in [
            serde_json::json!(""),
            serde_json::json!(12),
            serde_json::json!("a b"),
            serde_json::json!("x".repeat(129)),
            serde_json::json!("a\r\n"),
        ] {
            assert!(valid_code(&bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn errcode_table() {
        let code = |n| map_wechat_error(&WeChatError::Errcode(n)).code();
        assert_eq!(code(40029), "invalid_code");
        assert_eq!(code(40163), "code_used");
        assert_eq!(code(40226), "user_blocked");
        assert_eq!(code(45011), "rate_limited");
        assert_eq!(code(-1), "wechat_unavailable");
        assert_eq!(code(40013), "gateway_misconfigured");
        assert_eq!(code(40125), "gateway_misconfigured");
        assert_eq!(code(41002), "gateway_misconfigured");
        assert_eq!(code(41008), "gateway_misconfigured");
        assert_eq!(code(12345), "wechat_error");
        assert_eq!(
            map_wechat_error(&WeChatError::Timeout).code(),
            "wechat_timeout"
        );
        assert_eq!(
            map_wechat_error(&WeChatError::Unavailable("x".into())).code(),
            "wechat_unavailable"
        );
    }
}

//! wxgate's own endpoints: login (code → WeChat → session store → token),
//! session (the server side of `wx.checkSession`) and logout.
//!
//! One WeChat call per code: requests with the same code share the exchange
//! in flight, and a definitive answer is remembered for the code's life. The
//! exchange runs in its own task, so a client that hangs up mid-login cannot
//! cancel it and cause a second call that WeChat would answer with 40163.

pub mod ratelimit;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::FutureExt;
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
use crate::secret::Secret;
use crate::state::{ConnInfo, Gateway, InFlight, Snapshot};
use crate::store::{CodeOutcome, SessionStore, UserSession};
use crate::wechat::{self, WeChatError};

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
        if let Err(wait) = limiter.check(ip) {
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

    let outcome = exchange_once(gw, snap, appid, code).await?;
    match outcome {
        CodeOutcome::Token {
            access_token,
            jti,
            lifetime,
            issued_ms,
        } => {
            // Logged out since: the code's session is over, and WeChat would
            // answer 40163 to the code now.
            if gw.store().is_revoked(&jti).await {
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

/// The remembered outcome for (appid, code), or the one exchange in flight,
/// or a new exchange.
async fn exchange_once(
    gw: &Gateway,
    snap: &Arc<Snapshot>,
    appid: &str,
    code: &str,
) -> Result<CodeOutcome, Error> {
    let store = gw.store();
    if let Some(outcome) = store.code_outcome(appid, code).await {
        return Ok(outcome);
    }
    let key = (appid.to_owned(), code.to_owned());
    let flight: InFlight = {
        let mut logins = gw.logins().lock().expect("login map lock");
        // Checked again under the lock: a finished exchange stores its
        // outcome before it leaves the map, so one of the two has it.
        if let Some(outcome) = store.code_outcome(appid, code).now_or_never().flatten() {
            return Ok(outcome);
        }
        logins
            .entry(key.clone())
            .or_insert_with(|| {
                let task = tokio::spawn(run_exchange(gw.clone(), snap.clone(), key));
                async move { task.await.unwrap_or(Err(Error::Internal)) }
                    .boxed()
                    .shared()
            })
            .clone()
    };
    flight.await
}

async fn run_exchange(
    gw: Gateway,
    snap: Arc<Snapshot>,
    key: (String, String),
) -> Result<CodeOutcome, Error> {
    let (appid, code) = (&key.0, &key.1);
    let started = std::time::Instant::now();
    let result = match &snap.wechat {
        Some(client) => {
            let secret = snap
                .config
                .apps
                .iter()
                .find(|a| &a.appid == appid)
                .map(|a| &a.secret)
                .expect("selected from the config");
            client.code2session(appid, secret, code).await
        }
        None => wechat::simulate(code),
    };
    let elapsed_ms = started.elapsed().as_millis() as u64;
    if snap.wechat.is_some() {
        let errcode = match &result {
            Err(WeChatError::Errcode(code)) => Some(*code),
            _ => None,
        };
        gw.metrics().wechat_call(started.elapsed(), errcode);
    }
    let outcome = match result {
        Ok(session) => {
            let minted = snap.keys.mint(
                &session.openid,
                appid,
                session.unionid.as_deref(),
                snap.keys.ttl(),
                token::now(),
            );
            match minted {
                Ok((access_token, claims)) => {
                    let openid = snap.openid_log.field(&session.openid);
                    tracing::info!(appid = %appid, openid, elapsed_ms, "login");
                    gw.store()
                        .put_session(
                            appid,
                            &session.openid,
                            UserSession {
                                session_key: session.session_key,
                                unionid: session.unionid,
                            },
                        )
                        .await;
                    Ok(CodeOutcome::Token {
                        access_token: Secret::new(access_token),
                        lifetime: claims.exp.saturating_sub(claims.iat),
                        issued_ms: now_ms(),
                        jti: claims.jti,
                    })
                }
                Err(e) => {
                    tracing::error!(error = %e, "cannot sign a token");
                    Err(Error::Internal)
                }
            }
        }
        Err(e) => {
            let mapped = map_wechat_error(&e);
            tracing::warn!(appid = %appid, error = %e, elapsed_ms, code = %mapped.code(), "login refused");
            match mapped {
                Error::InvalidCode | Error::CodeUsed | Error::UserBlocked => {
                    Ok(CodeOutcome::Refused(mapped))
                }
                transient => Err(transient),
            }
        }
    };
    if let Ok(definitive) = &outcome {
        gw.store()
            .put_code_outcome(appid, code, definitive.clone())
            .await;
    }
    gw.logins().lock().expect("login map lock").remove(&key);
    outcome
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
        WeChatError::Errcode(code) => Error::WeChatError(*code),
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
            .await
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
    let store = gw.store();
    store.revoke(&verified.jti, verified.exp).await;
    store
        .drop_session(verified.appid_str(), verified.openid_str())
        .await;
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

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
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

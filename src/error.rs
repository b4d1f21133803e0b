//! Every error a request can end in, and the one table that turns it into a
//! status, a stable `error` code and a JSON body. The client sees the code and
//! a short message; causes go to the log, never a secret to either.

use bytes::Bytes;
use http::header::{HeaderValue, ALLOW, CONTENT_TYPE, RETRY_AFTER, WWW_AUTHENTICATE};
use http::{Response, StatusCode};

use crate::auth::token::TokenError;
use crate::http::body::Body;

#[derive(Debug, Clone, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    InvalidRequest(&'static str),
    #[error("a token is required")]
    MissingToken,
    #[error("token refused: {0:?}")]
    Token(TokenError),
    #[error("the code is invalid or expired")]
    InvalidCode,
    #[error("the code was already used")]
    CodeUsed,
    #[error("WeChat refused this user")]
    UserBlocked,
    #[error("no route")]
    NotFound,
    #[error("method not allowed")]
    MethodNotAllowed(HeaderValue),
    #[error("CONNECT is not supported")]
    Connect,
    #[error("payload too large")]
    PayloadTooLarge,
    #[error("rate limited")]
    RateLimited { retry_after_secs: u64 },
    #[error("WeChat rate limit (45011)")]
    WeChatRateLimited,
    #[error("WeChat rejected the app's credentials (errcode {0})")]
    Misconfigured(i64),
    #[error("upstream unavailable")]
    UpstreamUnavailable,
    #[error("WeChat errcode {0}")]
    WeChatErrcode(i64),
    #[error("WeChat unavailable")]
    WeChatUnavailable,
    #[error("upstream timed out")]
    UpstreamTimeout,
    #[error("WeChat timed out")]
    WeChatTimeout,
    #[error("internal error")]
    Internal,
    // The internal API's own refusals (see `internal`).
    #[error("caller not allowed on the internal API")]
    Forbidden,
    #[error("this WeChat path needs the AppSecret")]
    ForbiddenPath,
    #[error("unknown appid")]
    UnknownApp,
    #[error("no session_key stored for this user")]
    SessionUnknown,
    #[error("encryptedData does not decrypt with the stored session_key")]
    DecryptFailed,
    #[error("the watermark names another appid or is too old")]
    WatermarkMismatch,
    /// WeChat 40029 to a getPhoneNumber code: 422 here, unlike a login
    /// code's 401, since the caller is a backend, not the token holder.
    #[error("the phone code is invalid or expired")]
    PhoneCodeInvalid,
    #[error("the session store is unavailable")]
    StoreUnavailable,
}

impl Error {
    /// The single table from error to status and code.
    pub fn status_and_code(&self) -> (StatusCode, &'static str) {
        use Error::*;
        match self {
            InvalidRequest(_) => (StatusCode::BAD_REQUEST, "invalid_request"),
            MissingToken => (StatusCode::UNAUTHORIZED, "missing_token"),
            Token(TokenError::Invalid(_)) => (StatusCode::UNAUTHORIZED, "invalid_token"),
            Token(TokenError::Expired) => (StatusCode::UNAUTHORIZED, "token_expired"),
            Token(TokenError::Revoked) => (StatusCode::UNAUTHORIZED, "token_revoked"),
            InvalidCode => (StatusCode::UNAUTHORIZED, "invalid_code"),
            CodeUsed => (StatusCode::UNAUTHORIZED, "code_used"),
            UserBlocked => (StatusCode::FORBIDDEN, "user_blocked"),
            NotFound => (StatusCode::NOT_FOUND, "not_found"),
            MethodNotAllowed(_) | Connect => (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed"),
            PayloadTooLarge => (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large"),
            RateLimited { .. } | WeChatRateLimited => {
                (StatusCode::TOO_MANY_REQUESTS, "rate_limited")
            }
            Misconfigured(_) => (StatusCode::INTERNAL_SERVER_ERROR, "gateway_misconfigured"),
            UpstreamUnavailable => (StatusCode::BAD_GATEWAY, "upstream_unavailable"),
            WeChatErrcode(_) => (StatusCode::BAD_GATEWAY, "wechat_error"),
            WeChatUnavailable => (StatusCode::SERVICE_UNAVAILABLE, "wechat_unavailable"),
            UpstreamTimeout => (StatusCode::GATEWAY_TIMEOUT, "upstream_timeout"),
            WeChatTimeout => (StatusCode::GATEWAY_TIMEOUT, "wechat_timeout"),
            Internal => (StatusCode::INTERNAL_SERVER_ERROR, "internal_error"),
            Forbidden => (StatusCode::FORBIDDEN, "forbidden"),
            ForbiddenPath => (StatusCode::FORBIDDEN, "forbidden_path"),
            UnknownApp => (StatusCode::NOT_FOUND, "unknown_app"),
            SessionUnknown => (StatusCode::NOT_FOUND, "session_unknown"),
            DecryptFailed => (StatusCode::UNPROCESSABLE_ENTITY, "decrypt_failed"),
            WatermarkMismatch => (StatusCode::UNPROCESSABLE_ENTITY, "watermark_mismatch"),
            PhoneCodeInvalid => (StatusCode::UNPROCESSABLE_ENTITY, "invalid_code"),
            StoreUnavailable => (StatusCode::SERVICE_UNAVAILABLE, "store_unavailable"),
        }
    }

    pub fn code(&self) -> &'static str {
        self.status_and_code().1
    }

    /// Text for humans; stable enough to read, never a cause from inside.
    fn message(&self) -> String {
        use Error::*;
        match self {
            InvalidRequest(why) => (*why).to_owned(),
            MissingToken => "this route requires a token".to_owned(),
            Token(TokenError::Invalid(why)) => format!("the token is invalid: {why}"),
            Token(TokenError::Expired) => "the token has expired".to_owned(),
            Token(TokenError::Revoked) => "the token was revoked (logged out)".to_owned(),
            InvalidCode => "the login code is invalid or expired; call wx.login again".to_owned(),
            CodeUsed => "the login code was already used; call wx.login again".to_owned(),
            UserBlocked => "WeChat refused the login for this user".to_owned(),
            NotFound => "no route for this path".to_owned(),
            MethodNotAllowed(_) => "this route does not accept the method".to_owned(),
            Connect => "CONNECT is not supported: wxgate is not a forward proxy".to_owned(),
            PayloadTooLarge => "the request body is too large".to_owned(),
            RateLimited { .. } => "too many login attempts; retry later".to_owned(),
            WeChatRateLimited => {
                "WeChat rate limit reached (errcode 45011); retry later".to_owned()
            }
            Misconfigured(code) => {
                format!("WeChat rejected the gateway's app credentials (errcode {code})")
            }
            UpstreamUnavailable => "the upstream service is unavailable".to_owned(),
            WeChatErrcode(code) => format!("WeChat answered errcode {code}"),
            WeChatUnavailable => "WeChat is unavailable; retry later".to_owned(),
            UpstreamTimeout => "the upstream service did not answer in time".to_owned(),
            WeChatTimeout => "WeChat did not answer in time".to_owned(),
            Internal => "internal error".to_owned(),
            Forbidden => "this caller may not use the internal API".to_owned(),
            ForbiddenPath => {
                "this WeChat path needs the AppSecret, which wxgate does not lend".to_owned()
            }
            UnknownApp => "no app with this appid is configured".to_owned(),
            SessionUnknown => {
                "no session_key is stored for this user; the mini-program must log in again"
                    .to_owned()
            }
            DecryptFailed => "the data does not decrypt with the user's current session_key; \
                              log in again, then fetch the data again"
                .to_owned(),
            WatermarkMismatch => {
                "the data's watermark names another appid or is too old".to_owned()
            }
            PhoneCodeInvalid => {
                "WeChat refused the phone code (invalid, expired or used)".to_owned()
            }
            StoreUnavailable => "the session store cannot answer now; try again shortly".to_owned(),
        }
    }

    /// The JSON answer, with the headers the status calls for.
    pub fn into_response(self) -> Response<Body> {
        let (status, code) = self.status_and_code();
        let body = serde_json::json!({ "error": code, "message": self.message() });
        let mut response = Response::new(Body::full(Bytes::from(body.to_string())));
        *response.status_mut() = status;
        let headers = response.headers_mut();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        match self {
            Error::MethodNotAllowed(allow) => {
                headers.insert(ALLOW, allow);
            }
            // No `Allow` for CONNECT: its target is an authority, not one of
            // wxgate's resources, so there is no method list to give; an
            // empty `Allow` would say that nothing is allowed anywhere.
            Error::RateLimited { retry_after_secs } => {
                headers.insert(RETRY_AFTER, HeaderValue::from(retry_after_secs.max(1)));
            }
            Error::WeChatRateLimited => {
                headers.insert(RETRY_AFTER, HeaderValue::from_static("60"));
            }
            Error::Token(reason) => {
                // The reasons are fixed texts of ours, with no `"` or `\`.
                let description = match reason {
                    TokenError::Invalid(why) => format!("the token is invalid: {why}"),
                    TokenError::Expired => "the token has expired".to_owned(),
                    TokenError::Revoked => "the token was revoked".to_owned(),
                };
                let challenge = format!(
                    "Bearer realm=\"wxgate\", error=\"invalid_token\", error_description=\"{description}\""
                );
                headers.insert(
                    WWW_AUTHENTICATE,
                    HeaderValue::from_str(&challenge).expect("static text"),
                );
            }
            _ if status == StatusCode::UNAUTHORIZED => {
                headers.insert(
                    WWW_AUTHENTICATE,
                    HeaderValue::from_static("Bearer realm=\"wxgate\""),
                );
            }
            _ => {}
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_401_has_a_challenge_and_json() {
        for e in [
            Error::MissingToken,
            Error::Token(TokenError::Invalid("x")),
            Error::Token(TokenError::Expired),
            Error::Token(TokenError::Revoked),
            Error::InvalidCode,
            Error::CodeUsed,
        ] {
            let refused_token = matches!(e, Error::Token(_));
            let r = e.into_response();
            assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
            let challenge = r.headers()[WWW_AUTHENTICATE].to_str().unwrap();
            assert!(challenge.starts_with("Bearer realm=\"wxgate\""));
            assert_eq!(challenge.contains("error=\"invalid_token\""), refused_token);
            assert_eq!(r.headers()[CONTENT_TYPE], "application/json");
        }
    }

    #[test]
    fn retry_after_and_allow() {
        let r = Error::RateLimited {
            retry_after_secs: 7,
        }
        .into_response();
        assert_eq!(r.status(), 429);
        assert_eq!(r.headers()[RETRY_AFTER], "7");
        let r = Error::MethodNotAllowed(HeaderValue::from_static("GET, POST")).into_response();
        assert_eq!(r.status(), 405);
        assert_eq!(r.headers()[ALLOW], "GET, POST");
    }
}

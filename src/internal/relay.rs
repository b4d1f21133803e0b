//! `ANY wechat/{path}`: a backend's call to one of WeChat's server APIs,
//! sent with the app's access_token in place of any the caller put in the
//! query. Bounded by `max_body` (the request and the answer, both held
//! whole: a retry sends the request again, and the answer must be read to
//! tell a refused token from an image) and `wechat.timeout`; follows no
//! redirect. If WeChat refuses the token wxgate holds, the token is renewed
//! and the request sent again, once. The answer comes back as WeChat gave
//! it: status, `Content-Type` and body, byte for byte.
//!
//! Paths that take the AppSecret (`cgi-bin/token`, `cgi-bin/stable_token`,
//! `sns/…`) are refused, after a strict check of the path: only plain
//! segments of letters, digits, `_`, `-` and `.`, none empty, none a dot
//! segment, nothing percent-encoded. Anything else is refused rather than
//! guessed at.

use http::header::CONTENT_TYPE;
use http::{Request, Response, StatusCode};
use hyper::body::Incoming;

use super::{body, Call};
use crate::error::Error;
use crate::http::body::Body;
use crate::wechat::access_token::is_token_refused;
use crate::wechat::api::{api_error, RelayRequest, Relayed};

pub(super) async fn relay(
    call: &Call<'_>,
    path: &str,
    req: Request<Incoming>,
) -> Result<Response<Body>, Error> {
    check_path(path)?;
    let (parts, request_body) = req.into_parts();
    let request = RelayRequest {
        method: parts.method,
        path: path.to_owned(),
        query: without_access_token(parts.uri.query().unwrap_or("")),
        content_type: parts.headers.get(CONTENT_TYPE).cloned(),
        body: body::read(request_body, call.config.max_body).await?,
    };
    let wechat = &call.snap.wechat_api;
    let cap = call.config.max_body;
    let answer = call
        .gw
        .tokens()
        .with_token(
            wechat,
            call.app,
            |a: &Relayed| is_token_refused(a.errcode()),
            |token| {
                let request = &request;
                async move {
                    wechat
                        .relay(request, &token, cap)
                        .await
                        .map_err(|e| api_error(&e))
                }
            },
        )
        .await?;
    let mut response = Response::new(Body::full(answer.body));
    *response.status_mut() =
        StatusCode::from_u16(answer.status).map_err(|_| Error::WeChatUnavailable)?;
    if let Some(content_type) = answer.content_type {
        response.headers_mut().insert(CONTENT_TYPE, content_type);
    }
    Ok(response)
}

/// Refuses a path that is not plain, or that needs the AppSecret.
fn check_path(path: &str) -> Result<(), Error> {
    let plain = !path.is_empty()
        && path.split('/').all(|segment| {
            !segment.is_empty()
                && segment != "."
                && segment != ".."
                && segment
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
        });
    if !plain {
        return Err(Error::InvalidRequest(
            "the WeChat path must be plain segments of letters, digits, _, - and .",
        ));
    }
    // WeChat's paths are case-sensitive, but a case variant must not slip
    // through: compare without case.
    let lower = path.to_ascii_lowercase();
    let needs_secret = lower == "sns"
        || lower.starts_with("sns/")
        || lower == "cgi-bin/token"
        || lower == "cgi-bin/stable_token";
    if needs_secret {
        return Err(Error::ForbiddenPath);
    }
    Ok(())
}

/// The caller's query without any `access_token` parameter (however its
/// name is encoded): wxgate adds its own.
fn without_access_token(query: &str) -> String {
    query
        .split('&')
        .filter(|pair| {
            let name = pair.split('=').next().unwrap_or("");
            !pair.is_empty() && !decoded_name_is(name, b"access_token")
        })
        .collect::<Vec<_>>()
        .join("&")
}

/// Whether `name`, percent- and plus-decoded, equals `wanted`.
fn decoded_name_is(name: &str, wanted: &[u8]) -> bool {
    let bytes = name.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let escaped = (bytes[i] == b'%')
            .then(|| bytes.get(i + 1..i + 3))
            .flatten()
            .filter(|h| h.iter().all(u8::is_ascii_hexdigit))
            .and_then(|h| u8::from_str_radix(std::str::from_utf8(h).ok()?, 16).ok());
        match (escaped, bytes[i]) {
            (Some(b), _) => {
                decoded.push(b);
                i += 3;
            }
            (None, b'+') => {
                decoded.push(b' ');
                i += 1;
            }
            (None, b) => {
                decoded.push(b);
                i += 1;
            }
        }
    }
    decoded == wanted
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths() {
        for ok in [
            "wxa/msg_sec_check",
            "wxa/getwxacodeunlimit",
            "cgi-bin/message/subscribe/send",
            "cgi-bin/tokenx",
            "wxa/business/getuserriskrank",
            "datacube/getweanalysisappiddailysummarytrend",
        ] {
            assert!(check_path(ok).is_ok(), "{ok}");
        }
        for forbidden in [
            "cgi-bin/token",
            "cgi-bin/stable_token",
            "CGI-BIN/Token",
            "sns/jscode2session",
            "SNS/jscode2session",
            "sns",
            "Sns/x",
        ] {
            assert!(
                matches!(check_path(forbidden), Err(Error::ForbiddenPath)),
                "{forbidden}"
            );
        }
        for bad in [
            "",
            "/sns/jscode2session",
            "wxa//x",
            "wxa/",
            "./sns/jscode2session",
            "wxa/../sns/jscode2session",
            "wxa/..",
            "sns%2Fjscode2session",
            "%73ns/jscode2session",
            "wxa/x y",
            "wxa\\..\\sns",
            "cgi-bin/token;x",
        ] {
            assert!(
                matches!(check_path(bad), Err(Error::InvalidRequest(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn caller_access_tokens_are_dropped() {
        assert_eq!(without_access_token(""), "");
        assert_eq!(without_access_token("a=1&b=2"), "a=1&b=2");
        assert_eq!(without_access_token("access_token=x&a=1"), "a=1");
        assert_eq!(
            without_access_token("a=1&access%5Ftoken=x&access_token&b=%20"),
            "a=1&b=%20"
        );
        assert_eq!(without_access_token("&&a=1&"), "a=1");
        assert_eq!(without_access_token("access_tokens=1"), "access_tokens=1");
    }
}

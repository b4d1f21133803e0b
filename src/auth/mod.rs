//! Takes the token from a request, verifies it, and yields the identity the
//! upstream will see. The one check shared by proxied routes and wxgate's own
//! session endpoints.

pub(crate) mod forward_auth;
pub(crate) mod jwks;
pub mod token;

use std::sync::Arc;

use http::HeaderMap;

use crate::auth::token::TokenError;
use crate::config::{AuthMode, IdentityConfig, RouteConfig, TokenHeader};
use crate::error::Error;
use crate::state::Snapshot;
use crate::store::Store;
use token::Verified;

/// `Authorization` carrying a bare value: a token sent without its scheme.
pub const NOT_BEARER: &str = "Authorization must use the Bearer scheme";

/// The token the client presented, if any. An `Authorization` with another
/// scheme (Basic, say) is someone else's credential and counts as none; one
/// with no scheme at all is a token sent wrongly, refused as such.
pub fn extract_token<'a>(
    headers: &'a HeaderMap,
    header: &TokenHeader,
) -> Result<Option<&'a str>, Error> {
    let name = match header {
        TokenHeader::Bearer => http::header::AUTHORIZATION,
        TokenHeader::Custom(name) => name.clone(),
    };
    let mut values = headers.get_all(&name).iter();
    let Some(value) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(Error::Token(TokenError::Invalid(
            "more than one token header",
        )));
    }
    // UTF-8, not `to_str`'s visible ASCII: checked 16 bytes at a time, and a
    // token is ASCII anyway (anything else fails its own checks).
    let text = std::str::from_utf8(value.as_bytes())
        .map_err(|_| Error::Token(TokenError::Invalid("not text")))?
        .trim();
    let token = match header {
        TokenHeader::Bearer => match text.split_once(' ') {
            Some((scheme, rest)) if scheme.eq_ignore_ascii_case("bearer") => rest.trim_start(),
            _ if text.eq_ignore_ascii_case("bearer") => "",
            Some(_) => return Ok(None),
            None => return Err(Error::Token(TokenError::Invalid(NOT_BEARER))),
        },
        TokenHeader::Custom(_) => text,
    };
    if token.is_empty() {
        return Ok(None);
    }
    Ok(Some(token))
}

/// A route's auth mode applied to a request's headers: the identity to
/// inject (`None`: anonymous), or the refusal. Proxied requests and the
/// forward-auth check both go through here.
pub async fn check_route(
    runtime: &Snapshot,
    store: &Store,
    route: &RouteConfig,
    headers: &HeaderMap,
) -> Result<Option<Arc<Verified>>, Error> {
    // An `auth = "none"` route ignores whatever token header it gets,
    // malformed or repeated ones included.
    let presented = match route.auth {
        AuthMode::None => None,
        _ => extract_token(headers, &runtime.config.auth.token_header)?,
    };
    match (route.auth, presented) {
        (AuthMode::None, _) | (AuthMode::Optional, None) => Ok(None),
        (AuthMode::Required, None) => Err(Error::MissingToken),
        (_, Some(token)) => Ok(Some(
            verify(runtime, store, token, route.apps.as_deref()).await?,
        )),
    }
}

/// Verifies `token` for a route restricted to `apps` (None: any configured
/// app), including revocation.
pub async fn verify(
    runtime: &Snapshot,
    store: &Store,
    token: &str,
    apps: Option<&[String]>,
) -> Result<Arc<Verified>, Error> {
    let verified = runtime
        .keys
        .verify(token, token::now())
        .map_err(Error::Token)?;
    if let Some(apps) = apps {
        if !apps.iter().any(|a| a == verified.appid_str()) {
            return Err(Error::Token(TokenError::Invalid(
                "token is for another app",
            )));
        }
    }
    if store.is_revoked(&verified.jti)? {
        return Err(Error::Token(TokenError::Revoked));
    }
    Ok(verified)
}

/// Sets exactly one of each identity header; run after the request was
/// stripped ([`crate::http::headers::StripRule`]).
pub fn inject_identity(headers: &mut HeaderMap, who: &Verified, names: &IdentityConfig) {
    headers.insert(names.openid_header.clone(), who.openid.clone());
    headers.insert(names.appid_header.clone(), who.appid.clone());
    if let Some(unionid) = &who.unionid {
        headers.insert(names.unionid_header.clone(), unionid.clone());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn bearer_extraction() {
        let b = TokenHeader::Bearer;
        assert_eq!(extract_token(&headers(&[]), &b).unwrap(), None);
        assert_eq!(
            extract_token(&headers(&[("authorization", "Bearer abc")]), &b).unwrap(),
            Some("abc")
        );
        assert_eq!(
            extract_token(&headers(&[("authorization", "bearer   abc")]), &b).unwrap(),
            Some("abc")
        );
        assert_eq!(
            extract_token(&headers(&[("authorization", "Basic Zm9v")]), &b).unwrap(),
            None
        );
        assert_eq!(
            extract_token(&headers(&[("authorization", "Bearer")]), &b).unwrap(),
            None
        );
        assert!(matches!(
            extract_token(&headers(&[("authorization", "eyJ.x.y")]), &b),
            Err(Error::Token(TokenError::Invalid(NOT_BEARER)))
        ));
        assert!(extract_token(
            &headers(&[("authorization", "Bearer a"), ("authorization", "Bearer b")]),
            &b
        )
        .is_err());
        let custom = TokenHeader::Custom(http::HeaderName::from_static("x-token"));
        assert_eq!(
            extract_token(&headers(&[("x-token", "abc")]), &custom).unwrap(),
            Some("abc")
        );
        assert_eq!(
            extract_token(&headers(&[("authorization", "Bearer abc")]), &custom).unwrap(),
            None
        );
    }
}

//! Forward-auth: `{auth.verify_path}` tells an ingress that proxies by itself
//! (nginx `auth_request`, Traefik ForwardAuth, Envoy `ext_authz`) what wxgate
//! would decide for the request it describes. 200 carries the identity
//! headers to copy upstream (none for an anonymous request); a refusal is the
//! same JSON error a proxied request would get (400, 401, 404, 405). Nothing
//! is forwarded and no body is read.
//!
//! Where the described ("original") request comes from:
//!
//! - from a peer in `server.trusted_proxies`, the headers of one family:
//!   `X-Forwarded-Method` + `X-Forwarded-Uri` (Traefik), or
//!   `X-Original-Method` + `X-Original-URI` or `X-Original-URL` (nginx,
//!   ingress-nginx). The host is the authority of `X-Original-URL`, else
//!   `X-Forwarded-Host`, else `Host`. Both families at once, a repeated header,
//!   or a URI without its method is refused (400): a client could have added
//!   whichever one the proxy does not overwrite.
//! - without those headers, the verify request describes itself: its method,
//!   its `Host`, and the path below `verify_path`
//!   (`/auth/verify/api/x` → `/api/x`; Envoy's `path_prefix`).
//! - those headers from any other peer are refused (400), never ignored: a
//!   proxy missing from `trusted_proxies` must fail closed, not have
//!   `/auth/verify` itself judged in place of the request it asked about.
//!
//! The original path is normalized and routed exactly like a proxied
//! request's, then the route's methods and auth mode are checked with the
//! same functions ([`router::check_method`], [`auth::check_route`]).

use http::header::{HeaderMap, HeaderName, HeaderValue, CACHE_CONTROL, HOST};
use http::request::Parts;
use http::{Method, Response};

use crate::auth;
use crate::auth::token::Verified;
use crate::config::{strip_port, IdentityConfig};
use crate::error::Error;
use crate::http::body::Body;
use crate::http::headers::{self, X_FORWARDED_HOST};
use crate::http::host::request_host;
use crate::http::path;
use crate::router::{self, Target};
use crate::state::{ConnInfo, Gateway, Snapshot};

pub const X_FORWARDED_METHOD: HeaderName = HeaderName::from_static("x-forwarded-method");
pub const X_FORWARDED_URI: HeaderName = HeaderName::from_static("x-forwarded-uri");
pub const X_ORIGINAL_METHOD: HeaderName = HeaderName::from_static("x-original-method");
pub const X_ORIGINAL_URI: HeaderName = HeaderName::from_static("x-original-uri");
pub const X_ORIGINAL_URL: HeaderName = HeaderName::from_static("x-original-url");

/// Every header that describes the original request; only trusted peers
/// may send them.
const DESCRIBING: [HeaderName; 6] = [
    X_FORWARDED_METHOD,
    X_FORWARDED_URI,
    X_FORWARDED_HOST,
    X_ORIGINAL_METHOD,
    X_ORIGINAL_URI,
    X_ORIGINAL_URL,
];

/// The request an ingress asks about.
#[derive(Debug, PartialEq, Eq)]
struct Original<'a> {
    method: Method,
    /// Without port.
    host: Option<&'a str>,
    /// Not yet normalized, without the query (routing ignores it).
    path: &'a str,
}

/// `{verify_path}` and below. `path` is the verify request's normalized path.
pub async fn verify(
    gw: &Gateway,
    snap: &Snapshot,
    parts: &Parts,
    path: &str,
    conn: &ConnInfo,
) -> Result<Response<Body>, Error> {
    let trusted = headers::is_trusted(conn.peer.ip(), &snap.config.server.trusted_proxies);
    let original = original_request(parts, path, &snap.config.auth.verify_path, trusted)?;
    let original_path =
        path::normalize(original.path).map_err(|e| Error::InvalidRequest(e.reason()))?;
    let identity = match snap.router.find(original.host, &original_path) {
        None => return Err(Error::NotFound),
        Some(Target::Route(index)) => {
            let route = snap.router.route(index);
            router::check_method(route, &original.method)?;
            auth::check_route(snap, gw.store(), route, &parts.headers).await?
        }
        // wxgate's own endpoints check their tokens themselves.
        Some(_) => None,
    };
    Ok(allowed(identity.as_deref(), &snap.identity))
}

/// 200 with exactly the identity headers a proxied request would carry.
fn allowed(identity: Option<&Verified>, names: &IdentityConfig) -> Response<Body> {
    let mut response = Response::new(Body::empty());
    let headers = response.headers_mut();
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if let Some(who) = identity {
        crate::auth::inject_identity(headers, who, names);
    }
    response
}

fn original_request<'a>(
    parts: &'a Parts,
    path: &'a str,
    verify_path: &str,
    trusted: bool,
) -> Result<Original<'a>, Error> {
    let h = &parts.headers;
    if !trusted {
        if DESCRIBING.iter().any(|name| h.contains_key(name)) {
            return Err(Error::InvalidRequest(
                "X-Forwarded-Uri, X-Original-URI and the like are only accepted from server.trusted_proxies",
            ));
        }
        return described_by_itself(parts, path, verify_path);
    }
    let forwarded = (
        single(h, &X_FORWARDED_METHOD)?,
        single(h, &X_FORWARDED_URI)?,
    );
    let original = (
        single(h, &X_ORIGINAL_METHOD)?,
        single(h, &X_ORIGINAL_URI)?,
        single(h, &X_ORIGINAL_URL)?,
    );
    let forwarded_host = single(h, &X_FORWARDED_HOST)?.map(|v| strip_port(v.trim()));
    let (method, path, url_host) = match (forwarded, original) {
        ((None, None), (None, None, None)) => {
            let mut itself = described_by_itself(parts, path, verify_path)?;
            itself.host = forwarded_host.or(itself.host);
            return Ok(itself);
        }
        ((method, Some(uri)), (None, None, None)) => (method, uri, None),
        ((None, None), (method, Some(uri), None)) => (method, uri, None),
        ((None, None), (method, None, Some(url))) => {
            let (host, path) = split_url(url)?;
            (method, path, Some(host))
        }
        _ => return Err(Error::InvalidRequest(
            "send one of X-Forwarded-Method/-Uri or X-Original-Method/-URI (or -URL), once each",
        )),
    };
    let method = method.ok_or(Error::InvalidRequest(
        "the original request's method is missing (X-Forwarded-Method or X-Original-Method)",
    ))?;
    let method = Method::from_bytes(method.as_bytes())
        .map_err(|_| Error::InvalidRequest("the original request's method is not a method"))?;
    // A URL is one value the proxy wrote whole: its host wins.
    let host = url_host
        .or(forwarded_host)
        .or_else(|| header_host(&parts.headers));
    Ok(Original {
        method,
        host,
        path: path_of(path)?,
    })
}

/// Envoy's `path_prefix`: `{verify_path}/api/x` asks about `/api/x`, with
/// this request's own method and host.
fn described_by_itself<'a>(
    parts: &'a Parts,
    path: &'a str,
    verify_path: &str,
) -> Result<Original<'a>, Error> {
    let below = path.strip_prefix(verify_path).unwrap_or_default();
    if below.is_empty() {
        return Err(Error::InvalidRequest(
            "no original request: send X-Forwarded-Uri or X-Original-URI, or ask about a path below the verify path",
        ));
    }
    Ok(Original {
        method: parts.method.clone(),
        host: request_host(parts)?,
        path: below,
    })
}

/// The one value of `name`, if sent; twice or not text is refused.
fn single<'a>(headers: &'a HeaderMap, name: &HeaderName) -> Result<Option<&'a str>, Error> {
    let mut values = headers.get_all(name).iter();
    let Some(value) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(Error::InvalidRequest(
            "a header describing the original request is repeated",
        ));
    }
    value
        .to_str()
        .map(|v| Some(v.trim()))
        .map_err(|_| Error::InvalidRequest("a header describing the original request is not text"))
}

fn header_host(headers: &HeaderMap) -> Option<&str> {
    headers.get(HOST)?.to_str().ok().map(strip_port)
}

/// An origin-form target (`/path?query`) → its path.
fn path_of(target: &str) -> Result<&str, Error> {
    if !target.starts_with('/') {
        return Err(Error::InvalidRequest(
            "the original URI must be a path starting with /",
        ));
    }
    Ok(target.split(['?', '#']).next().unwrap_or(target))
}

/// `http(s)://host[:port]/path?query` → (host without port, path).
fn split_url(url: &str) -> Result<(&str, &str), Error> {
    let bad = || Error::InvalidRequest("X-Original-URL must be an absolute http(s) URL");
    let scheme_end = url.find("://").ok_or_else(bad)?;
    if !["http", "https"]
        .iter()
        .any(|s| s.eq_ignore_ascii_case(&url[..scheme_end]))
    {
        return Err(bad());
    }
    let rest = &url[scheme_end + 3..];
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, target) = rest.split_at(end);
    if authority.is_empty() || authority.contains('@') {
        return Err(bad());
    }
    let path = match target.as_bytes().first() {
        None | Some(b'?') | Some(b'#') => "/",
        Some(_) => path_of(target)?,
    };
    Ok((strip_port(authority), path))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(method: &str, uri: &str, headers: &[(&str, &str)]) -> Parts {
        let mut builder = http::Request::builder().method(method).uri(uri);
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        builder.body(()).unwrap().into_parts().0
    }

    fn described(
        method: &str,
        uri: &str,
        headers: &[(&str, &str)],
        trusted: bool,
    ) -> Result<(String, Option<String>, String), &'static str> {
        let p = parts(method, uri, headers);
        let path = p.uri.path().to_owned();
        original_request(&p, &path, "/auth/verify", trusted)
            .map(|o| {
                (
                    o.method.to_string(),
                    o.host.map(str::to_owned),
                    o.path.to_owned(),
                )
            })
            .map_err(|e| e.code())
    }

    fn ok(method: &str, host: Option<&str>, path: &str) -> (String, Option<String>, String) {
        (method.into(), host.map(str::to_owned), path.into())
    }

    #[test]
    fn each_header_family_describes_the_request() {
        let traefik = [
            ("host", "wxgate.internal"),
            ("x-forwarded-method", "DELETE"),
            ("x-forwarded-uri", "/api/x?y=1"),
            ("x-forwarded-host", "shop.example:443"),
        ];
        assert_eq!(
            described("GET", "/auth/verify", &traefik, true),
            Ok(ok("DELETE", Some("shop.example"), "/api/x"))
        );
        let nginx = [
            ("host", "shop.example"),
            ("x-original-method", "POST"),
            ("x-original-uri", "/api/y"),
        ];
        assert_eq!(
            described("GET", "/auth/verify", &nginx, true),
            Ok(ok("POST", Some("shop.example"), "/api/y"))
        );
        let ingress_nginx = [
            ("host", "wxgate.internal"),
            ("x-forwarded-host", "client-said.example"),
            ("x-original-method", "PUT"),
            ("x-original-url", "https://Shop.example:8443/api/z?q#f"),
        ];
        assert_eq!(
            described("GET", "/auth/verify", &ingress_nginx, true),
            Ok(ok("PUT", Some("Shop.example"), "/api/z"))
        );
        assert_eq!(
            described(
                "GET",
                "/auth/verify",
                &[
                    ("x-original-method", "GET"),
                    ("x-original-url", "http://a?x")
                ],
                true
            ),
            Ok(ok("GET", Some("a"), "/"))
        );
    }

    #[test]
    fn without_headers_the_path_below_is_the_request() {
        assert_eq!(
            described(
                "PATCH",
                "/auth/verify/api/x?q=1",
                &[("host", "h:80")],
                false
            ),
            Ok(ok("PATCH", Some("h"), "/api/x"))
        );
        assert_eq!(
            described(
                "GET",
                "/auth/verify/api",
                &[("host", "h"), ("x-forwarded-host", "other")],
                true
            ),
            Ok(ok("GET", Some("other"), "/api"))
        );
        for trusted in [true, false] {
            assert_eq!(
                described("GET", "/auth/verify", &[], trusted),
                Err("invalid_request")
            );
        }
    }

    #[test]
    fn untrusted_peers_cannot_describe_anything() {
        for name in DESCRIBING {
            let headers = [(name.as_str(), "/api")];
            assert_eq!(
                described("GET", "/auth/verify/public", &headers, false),
                Err("invalid_request"),
                "{name}"
            );
        }
    }

    #[test]
    fn ambiguous_or_incomplete_descriptions_are_refused() {
        let cases: &[&[(&str, &str)]] = &[
            // A client adds the family the proxy does not overwrite.
            &[
                ("x-original-method", "GET"),
                ("x-original-uri", "/api"),
                ("x-forwarded-uri", "/public"),
            ],
            &[
                ("x-original-method", "GET"),
                ("x-original-uri", "/api"),
                ("x-original-url", "http://h/public"),
            ],
            &[("x-forwarded-uri", "/api")],
            &[("x-forwarded-method", "GET")],
            &[
                ("x-forwarded-method", "GET"),
                ("x-forwarded-uri", "/api"),
                ("x-forwarded-uri", "/public"),
            ],
            &[("x-forwarded-method", "GET"), ("x-forwarded-uri", "api")],
            &[("x-forwarded-method", "G E T"), ("x-forwarded-uri", "/api")],
            &[("x-original-method", "GET"), ("x-original-url", "/api")],
            &[
                ("x-original-method", "GET"),
                ("x-original-url", "ftp://h/api"),
            ],
            &[
                ("x-original-method", "GET"),
                ("x-original-url", "http://u@h/api"),
            ],
        ];
        for headers in cases {
            assert_eq!(
                described("GET", "/auth/verify", headers, true),
                Err("invalid_request"),
                "{headers:?}"
            );
        }
    }
}

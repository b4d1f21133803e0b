//! `GET {auth.jwks_path}`: the JWK Set of the public signing keys, for
//! services that verify wxgate's ES256 / EdDSA tokens themselves. The
//! document is built once per config ([`crate::token::Keys::jwks`]), so a
//! reload that adds or drops a key changes it, and serving it copies nothing.

use http::header::{HeaderValue, CACHE_CONTROL, CONTENT_TYPE};
use http::{Method, Response};

use crate::body::Body;
use crate::error::Error;
use crate::gateway::Runtime;

/// How long verifiers may keep the set. A rotation publishes the new key
/// (verify_only) at least this long before it signs; see the README.
pub const MAX_AGE: &str = "public, max-age=300";

pub fn serve(rt: &Runtime, method: &Method) -> Result<Response<Body>, Error> {
    if method != Method::GET && method != Method::HEAD {
        return Err(Error::MethodNotAllowed(HeaderValue::from_static(
            "GET, HEAD",
        )));
    }
    let mut response = Response::new(Body::full(rt.keys.jwks().clone()));
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static(MAX_AGE));
    Ok(response)
}

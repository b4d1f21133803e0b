//! The JWK Set (RFC 7517) of the configured public keys, so that other
//! services can verify wxgate's ES256 and EdDSA tokens themselves, and the
//! endpoint that serves it (`GET {auth.jwks_path}`). HS256 keys are secrets
//! and never appear: with only HS256 keys the set is empty. The document is
//! built once per config ([`crate::auth::token::Keys::jwks`]), so a reload
//! that adds or drops a key changes it, and serving it copies nothing.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use bytes::Bytes;
use http::header::{HeaderValue, CACHE_CONTROL, CONTENT_TYPE};
use http::Response;
use serde_json::{json, Value};

use crate::config::{Algorithm, KeyConfig};
use crate::http::body::Body;

/// How long verifiers may keep the set. A rotation publishes the new key
/// (verify_only) at least this long before it signs; see the README.
pub const MAX_AGE: &str = "public, max-age=300";

/// The answer to `GET {auth.jwks_path}` (the method is checked by the
/// dispatcher, like every endpoint's).
pub fn response(document: &Bytes) -> Response<Body> {
    let mut response = Response::new(Body::full(document.clone()));
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static(MAX_AGE));
    response
}

/// `{"keys": [...]}` with one JWK per asymmetric key, signing and
/// verify-only alike (tokens of both are valid), in config order.
pub fn document(keys: &[KeyConfig]) -> String {
    let jwks: Vec<Value> = keys
        .iter()
        .filter_map(|k| {
            let public = k.material.public_key()?;
            let b64 = |bytes: &[u8]| URL_SAFE_NO_PAD.encode(bytes);
            Some(match k.algorithm {
                // The uncompressed point: 04 || x || y, 32 bytes each.
                Algorithm::ES256 => json!({
                    "kty": "EC",
                    "crv": "P-256",
                    "x": b64(&public.bytes[1..33]),
                    "y": b64(&public.bytes[33..65]),
                    "kid": k.id,
                    "alg": "ES256",
                    "use": "sig",
                }),
                Algorithm::EdDSA => json!({
                    "kty": "OKP",
                    "crv": "Ed25519",
                    "x": b64(&public.bytes),
                    "kid": k.id,
                    "alg": "EdDSA",
                    "use": "sig",
                }),
                Algorithm::HS256 => return None,
            })
        })
        .collect();
    json!({ "keys": jwks }).to_string()
}

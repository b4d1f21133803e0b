//! The properties the fuzz targets (`fuzz/`) check, here so that the
//! normal `cargo test` replays every saved input (`tests/it/fuzz_regressions.rs`)
//! through exactly the same checks. Each function takes arbitrary bytes and
//! panics only when wxgate broke a rule, never because the input was bad.
//! Not an API: hidden from the docs and free to change.

use std::collections::HashMap;
use std::path::Path;
use std::sync::OnceLock;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;

use crate::auth::token::Keys;
use crate::auth::token::TokenError;
use crate::config::Config;
use crate::http::path::normalize;
use crate::wechat::parse_answer;

/// The signing key of [`token_verify`]'s config.
pub const FUZZ_KEY: &str = "fuzz-signing-key-0123456789abcdef0123";
const FUZZ_APPS: [&str; 2] = ["wxfuzz0000000001", "wxfuzz0000000002"];
/// The clock [`token_verify`] verifies at.
pub const FUZZ_NOW: u64 = 1_700_000_000;

/// A normalized path is canonical: absolute, no empty or dot segment, no
/// byte or escape that could be read as a separator, and normalizing it
/// again changes nothing.
pub fn path_normalize(data: &[u8]) {
    let Ok(raw) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(out) = normalize(raw) else {
        return;
    };
    assert!(out.starts_with('/'), "{raw:?} -> {out:?}: not absolute");
    let body = out.strip_prefix('/').unwrap_or(&out);
    let body = body.strip_suffix('/').unwrap_or(body);
    if !body.is_empty() {
        for seg in body.split('/') {
            // What Tomcat-like upstreams read: the name before `;`.
            let name = seg.split(';').next().unwrap_or(seg);
            assert!(
                !matches!(name, "" | "." | ".."),
                "{raw:?} -> {out:?}: segment {seg:?} survived"
            );
        }
    }
    assert!(
        !out.contains('\\') && !out.contains('\0'),
        "{raw:?} -> {out:?}"
    );
    let upper = out.to_ascii_uppercase();
    for escape in ["%2F", "%5C", "%00", "%2E"] {
        assert!(!upper.contains(escape), "{raw:?} -> {out:?}: {escape} left");
    }
    match normalize(&out) {
        Ok(again) => assert_eq!(again, out, "{raw:?}: not idempotent"),
        Err(e) => panic!("{raw:?} -> {out:?} is refused when normalized again: {e}"),
    }
}

/// The keys [`token_verify`] verifies with.
pub fn fuzz_keys() -> &'static Keys {
    static KEYS: OnceLock<Keys> = OnceLock::new();
    KEYS.get_or_init(|| {
        let toml = format!(
            "[server]\nlisten = \"127.0.0.1:0\"\n\
             [[apps]]\nappid = \"{}\"\nsecret = \"s\"\n\
             [[apps]]\nappid = \"{}\"\nsecret = \"s\"\n\
             [token]\n[[token.keys]]\nid = \"k1\"\nsecret = \"{FUZZ_KEY}\"\n\
             [[token.keys]]\nid = \"k0\"\nsecret = \"{FUZZ_KEY}-old\"\nverify_only = true\n",
            FUZZ_APPS[0], FUZZ_APPS[1]
        );
        let config = Config::parse_with_env(&toml, Path::new("fuzz.toml"), Some(HashMap::new()))
            .expect("the fuzz config is valid");
        Keys::new(&config.token, config.appids())
    })
}

/// Signs `header.payload` with the fuzz key, as a client holding it would.
pub fn sign_fuzz_token(header: &[u8], payload: &[u8]) -> String {
    let mut token = URL_SAFE_NO_PAD.encode(header);
    token.push('.');
    token.push_str(&URL_SAFE_NO_PAD.encode(payload));
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, FUZZ_KEY.as_bytes());
    let tag = ring::hmac::sign(&key, token.as_bytes());
    token.push('.');
    token.push_str(&URL_SAFE_NO_PAD.encode(tag.as_ref()));
    token
}

/// First byte 0: the rest is a token as a client sends it. Otherwise the
/// rest is `header JSON` NUL `claims JSON`, signed with the real key, so
/// that the checks after the signature are reached. Either way, what
/// verifies is a token wxgate would have minted: HS256 with a known kid,
/// our issuer, a configured audience, not expired, and ids fit for a header.
pub fn token_verify(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let token = if mode == 0 {
        match std::str::from_utf8(rest) {
            Ok(t) => t.to_owned(),
            Err(_) => return,
        }
    } else {
        let Some(nul) = rest.iter().position(|&b| b == 0) else {
            return;
        };
        sign_fuzz_token(&rest[..nul], &rest[nul + 1..])
    };
    let keys = fuzz_keys();
    let verified = match keys.verify_uncached(&token, FUZZ_NOW) {
        Ok(v) => v,
        Err(TokenError::Invalid(_) | TokenError::Expired | TokenError::Revoked) => return,
    };
    let parts: Vec<&str> = token.split('.').collect();
    assert_eq!(
        parts.len(),
        3,
        "{token:?} verified with {} parts",
        parts.len()
    );
    let header = URL_SAFE_NO_PAD
        .decode(parts[0])
        .expect("a verified header is base64url");
    let header: serde_json::Value =
        serde_json::from_slice(&header).expect("a verified header is JSON");
    assert_eq!(header["alg"], "HS256", "{token:?} verified with {header}");
    let kid = header["kid"].as_str().expect("a verified header has a kid");
    assert!(
        kid == "k1" || kid == "k0",
        "{token:?} verified with kid {kid}"
    );
    for field in ["crit", "jku", "jwk", "x5u", "x5c"] {
        assert!(
            header.get(field).is_none(),
            "{token:?} verified with {field}"
        );
    }
    assert!(FUZZ_APPS.contains(&verified.appid_str()), "{token:?}");
    for id in [Some(verified.openid_str()), verified.unionid_str()]
        .into_iter()
        .flatten()
    {
        assert!(header_safe_id(id), "{token:?} verified with id {id:?}");
    }
    assert!(
        FUZZ_NOW <= verified.exp.saturating_add(30),
        "{token:?} verified expired"
    );
    assert!(!verified.jti.is_empty() && verified.jti.len() <= 128);
}

/// One id in one header value: no separator, quote, space or control.
fn header_safe_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 128
        && id
            .bytes()
            .all(|b| b.is_ascii_graphic() && !b",;\"\\()<>@:[]{}?".contains(&b))
}

/// A config either loads or is refused with a message; it never panics,
/// and a loaded one builds a working token key set and router. Inputs that
/// name a file (`secret_file`, `tls_*`) are skipped: they would read the
/// fuzzing machine's disk.
pub fn config_parse(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if text.contains("_file") || text.contains("tls_") {
        return;
    }
    let env = HashMap::from([("FUZZ".to_owned(), "x".repeat(40))]);
    match Config::parse_with_env(text, Path::new("fuzz.toml"), Some(env)) {
        Err(e) => {
            let _ = e.to_string();
        }
        Ok(config) => {
            let keys = Keys::new(&config.token, config.appids());
            if let Some(appid) = config.appids().next() {
                let (token, _) = keys
                    .mint("o-fuzz", appid, None, config.token.ttl, FUZZ_NOW)
                    .expect("a loaded config mints");
                keys.verify_uncached(&token, FUZZ_NOW)
                    .expect("a loaded config verifies what it mints");
            }
            let router = crate::router::Router::new(config.routes.clone(), &config.auth);
            let _ = router.find(None, "/");
        }
    }
}

/// Whatever WeChat answers, a success carries ids fit for a header and a
/// non-empty session_key.
pub fn wechat_answer(data: &[u8]) {
    let Ok(session) = parse_answer(data) else {
        return;
    };
    for id in [Some(session.openid.as_str()), session.unionid.as_deref()]
        .into_iter()
        .flatten()
    {
        assert!(header_safe_id(id), "accepted id {id:?}");
    }
    assert!(!session.session_key.expose().is_empty());
}

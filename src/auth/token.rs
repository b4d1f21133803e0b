//! The token: claims, keys, minting and verification. Pure: no I/O, the
//! clock comes in as an argument.
//!
//! Verification decides the algorithm from the key named by `kid`, never from
//! the token: a header whose `alg` is not exactly that key's algorithm is
//! refused, and so is any header field wxgate does not write itself (`crit`,
//! `jku`, `jwk`, `x5u`, …), so nothing in a token can make wxgate fetch a key
//! or skip a check. Each key has one algorithm (HS256, ES256 or EdDSA), so
//! an HS256 token can never be checked against an ES256 key's public bytes.
//!
//! [`keys`] reads PEM key files; [`crate::auth::jwks`] publishes the public keys.

pub mod keys;

use std::borrow::Cow;
use std::sync::Arc;
use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use bytes::Bytes;
use http::HeaderValue;
use ring::rand::SystemRandom;
use serde::{Deserialize, Serialize};

use crate::config::{Algorithm, KeyMaterial, TokenConfig};
use keys::PrivateKey;

/// Most verified tokens remembered; a token seen again skips the signature
/// and JSON work (about a third of a proxied request's CPU).
const VERIFIED_CACHE_ENTRIES: u64 = 50_000;
/// A remembered verification is redone after this long without use.
const VERIFIED_CACHE_IDLE: Duration = Duration::from_secs(300);

/// Tokens longer than this are refused before any decoding.
pub const MAX_TOKEN_BYTES: usize = 8 * 1024;
/// Longest openid / unionid accepted in a token (WeChat's are 28–29).
const MAX_ID_BYTES: usize = 128;

/// The claims wxgate writes.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Claims {
    pub iss: String,
    /// The openid.
    pub sub: String,
    /// The appid.
    pub aud: String,
    pub iat: u64,
    pub exp: u64,
    pub jti: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unionid: Option<String>,
}

/// What a valid token proves, ready to be injected.
#[derive(Debug, Clone)]
pub struct Verified {
    pub openid: HeaderValue,
    pub appid: HeaderValue,
    pub unionid: Option<HeaderValue>,
    pub jti: String,
    pub exp: u64,
}

impl Verified {
    pub fn openid_str(&self) -> &str {
        self.openid.to_str().unwrap_or_default()
    }
    pub fn appid_str(&self) -> &str {
        self.appid.to_str().unwrap_or_default()
    }
    pub fn unionid_str(&self) -> Option<&str> {
        self.unionid.as_ref().and_then(|u| u.to_str().ok())
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHeader<'a> {
    #[serde(borrow)]
    alg: Cow<'a, str>,
    #[serde(borrow, default)]
    kid: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    typ: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct RawClaims<'a> {
    #[serde(borrow, default)]
    iss: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    sub: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    aud: Option<Cow<'a, str>>,
    #[serde(default)]
    iat: Option<u64>,
    #[serde(default)]
    nbf: Option<u64>,
    #[serde(default)]
    exp: Option<u64>,
    #[serde(borrow, default)]
    jti: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    unionid: Option<Cow<'a, str>>,
}

/// The header wxgate writes.
#[derive(Serialize)]
struct Header<'a> {
    typ: &'static str,
    alg: &'static str,
    kid: &'a str,
}

struct Key {
    id: String,
    /// The only algorithm its tokens may name.
    algorithm: Algorithm,
    check: Check,
}

/// How a key checks a signature.
enum Check {
    /// Keyed once at load (ring precomputes the inner and outer pads), and
    /// ring's SHA-256 uses the CPU's SHA extensions or vector code.
    Hmac(ring::hmac::Key),
    /// ECDSA P-256 (fixed-size r || s) or Ed25519, fixed by the key.
    Signature(ring::signature::UnparsedPublicKey<Vec<u8>>),
}

enum Signer {
    Hmac(ring::hmac::Key),
    Private(Arc<PrivateKey>),
}

/// Minting failed: only ECDSA's random nonce can make it fail.
#[derive(Debug, thiserror::Error)]
#[error("cannot sign the token: the system random source failed")]
pub struct MintError;

/// The configured keys, ready to sign and verify.
pub struct Keys {
    keys: Vec<Key>,
    signer: usize,
    signing_key: Signer,
    /// For ECDSA nonces.
    rng: SystemRandom,
    /// The JWK Set of the public keys, built once.
    jwks: Bytes,
    issuer: String,
    leeway: u64,
    ttl: Duration,
    /// Configured appids with their header values, built once.
    apps: Vec<(String, HeaderValue)>,
    /// Tokens that passed [`Keys::verify_uncached`], by their exact text.
    /// Only successes; what depends on the clock (`exp`) is checked again on
    /// every hit, and revocation and route rules are the caller's, each
    /// time. It lives and dies with these keys, so a reload that drops a key
    /// drops what it verified.
    verified: moka::sync::Cache<String, Arc<Verified>, foldhash::fast::RandomState>,
}

impl std::fmt::Debug for Keys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keys")
            .field("ids", &self.keys.iter().map(|k| &k.id).collect::<Vec<_>>())
            .field("signer", &self.keys[self.signer].id)
            .finish_non_exhaustive()
    }
}

/// Why a presented token was refused; each maps to one 401 code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenError {
    /// Bad format, signature, algorithm, key, issuer or audience.
    Invalid(&'static str),
    Expired,
    Revoked,
}

fn invalid(why: &'static str) -> TokenError {
    TokenError::Invalid(why)
}

impl Keys {
    /// Builds from a validated config (which guarantees a signing key and
    /// long enough secrets).
    pub fn new<'a>(config: &TokenConfig, appids: impl Iterator<Item = &'a str>) -> Keys {
        let hmac = |secret: &crate::secret::Secret| {
            ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret.expose().as_bytes())
        };
        let keys = config
            .keys
            .iter()
            .map(|k| Key {
                id: k.id.clone(),
                algorithm: k.algorithm,
                check: match (&k.material, k.material.public_key()) {
                    (KeyMaterial::Secret(secret), _) => Check::Hmac(hmac(secret)),
                    (_, Some(public)) => Check::Signature(ring::signature::UnparsedPublicKey::new(
                        public.ring_algorithm(),
                        public.bytes.clone(),
                    )),
                    (_, None) => unreachable!("asymmetric keys have a public key"),
                },
            })
            .collect();
        let signer = config
            .keys
            .iter()
            .position(|k| !k.verify_only)
            .expect("config validation ensures a signing key");
        let signing_key = match &config.keys[signer].material {
            KeyMaterial::Secret(secret) => Signer::Hmac(hmac(secret)),
            KeyMaterial::Private(key) => Signer::Private(key.clone()),
            KeyMaterial::Public(_) => unreachable!("config validation: signing keys are private"),
        };
        Keys {
            keys,
            signer,
            signing_key,
            rng: SystemRandom::new(),
            jwks: Bytes::from(crate::auth::jwks::document(&config.keys)),
            issuer: config.issuer.clone(),
            leeway: config.leeway.as_secs(),
            ttl: config.ttl,
            apps: appids
                .map(|a| {
                    (
                        a.to_owned(),
                        HeaderValue::from_str(a).expect("appids are validated"),
                    )
                })
                .collect(),
            // foldhash (seeded per process) hashes a token in a fraction of
            // SipHash's time; its weaker flooding resistance does not
            // matter here, as only tokens wxgate signed are ever inserted.
            verified: moka::sync::Cache::builder()
                .max_capacity(VERIFIED_CACHE_ENTRIES)
                .time_to_idle(VERIFIED_CACHE_IDLE)
                .build_with_hasher(foldhash::fast::RandomState::default()),
        }
    }

    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// The JWK Set served at `auth.jwks_path`: the public keys of the ES256
    /// and EdDSA keys, never a secret.
    pub fn jwks(&self) -> &Bytes {
        &self.jwks
    }

    /// Signs a token for `openid` in `appid`, valid `ttl` from `now`.
    pub fn mint(
        &self,
        openid: &str,
        appid: &str,
        unionid: Option<&str>,
        ttl: Duration,
        now: u64,
    ) -> Result<(String, Claims), MintError> {
        let claims = Claims {
            iss: self.issuer.clone(),
            sub: openid.to_owned(),
            aud: appid.to_owned(),
            iat: now,
            exp: now + ttl.as_secs(),
            jti: new_jti(),
            unionid: unionid.map(str::to_owned),
        };
        let key = &self.keys[self.signer];
        let header = Header {
            alg: key.algorithm.name(),
            typ: "JWT",
            kid: &key.id,
        };
        let mut token = String::with_capacity(512);
        // Plain strings and numbers: serializing cannot fail.
        let header = serde_json::to_vec(&header).expect("the header serializes");
        URL_SAFE_NO_PAD.encode_string(header, &mut token);
        token.push('.');
        let payload = serde_json::to_vec(&claims).expect("the claims serialize");
        URL_SAFE_NO_PAD.encode_string(payload, &mut token);
        let signature = match &self.signing_key {
            Signer::Hmac(mac) => ring::hmac::sign(mac, token.as_bytes()).as_ref().to_vec(),
            Signer::Private(private) => private
                .sign(&self.rng, token.as_bytes())
                .map_err(|_| MintError)?,
        };
        token.push('.');
        URL_SAFE_NO_PAD.encode_string(signature, &mut token);
        Ok((token, claims))
    }

    /// Checks everything the contract asks of a token. A token verified
    /// before is taken from the cache, its expiry checked again against `now`.
    pub fn verify(&self, token: &str, now: u64) -> Result<Arc<Verified>, TokenError> {
        // Before the cache: hashing a megabyte header to look it up would
        // already cost more than refusing it.
        if token.len() > MAX_TOKEN_BYTES {
            return Err(invalid("too long"));
        }
        if let Some(verified) = self.verified.get(token) {
            if now > verified.exp.saturating_add(self.leeway) {
                return Err(TokenError::Expired);
            }
            return Ok(verified);
        }
        let verified = Arc::new(self.verify_uncached(token, now)?);
        self.verified.insert(token.to_owned(), verified.clone());
        Ok(verified)
    }

    /// Checks everything, in an order that reads no claim before the
    /// signature holds.
    pub fn verify_uncached(&self, token: &str, now: u64) -> Result<Verified, TokenError> {
        if token.len() > MAX_TOKEN_BYTES {
            return Err(invalid("too long"));
        }
        let mut parts = token.split('.');
        let (Some(header_b64), Some(payload_b64), Some(sig_b64), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(invalid("not a compact JWS"));
        };

        let mut buf = [0u8; 512];
        let n = URL_SAFE_NO_PAD
            .decode_slice(header_b64, &mut buf)
            .map_err(|_| invalid("bad header encoding"))?;
        let header: RawHeader =
            serde_json::from_slice(&buf[..n]).map_err(|_| invalid("unsupported header"))?;
        if header.typ.is_some_and(|t| !t.eq_ignore_ascii_case("JWT")) {
            return Err(invalid("typ is not JWT"));
        }
        let kid = header.kid.ok_or(invalid("no kid"))?;
        let key = self
            .keys
            .iter()
            .find(|k| k.id == kid)
            .ok_or(invalid("unknown kid"))?;
        // The key fixes the algorithm: an HS256 header on an ES256 key (the
        // public key used as an HMAC secret) is refused here.
        if header.alg != key.algorithm.name() {
            return Err(invalid("algorithm not allowed"));
        }

        let mut sig = [0u8; 64];
        let n = URL_SAFE_NO_PAD
            .decode_slice(sig_b64, &mut sig)
            .map_err(|_| invalid("bad signature encoding"))?;
        let signing_input = &token.as_bytes()[..header_b64.len() + 1 + payload_b64.len()];
        match &key.check {
            // Constant-time comparison inside ring.
            Check::Hmac(mac) => ring::hmac::verify(mac, signing_input, &sig[..n]),
            Check::Signature(public) => public.verify(signing_input, &sig[..n]),
        }
        .map_err(|_| invalid("bad signature"))?;

        let payload = URL_SAFE_NO_PAD
            .decode(payload_b64)
            .map_err(|_| invalid("bad payload encoding"))?;
        let claims: RawClaims =
            serde_json::from_slice(&payload).map_err(|_| invalid("bad claims"))?;
        if claims.iss.as_deref() != Some(self.issuer.as_str()) {
            return Err(invalid("wrong issuer"));
        }
        let aud = claims.aud.ok_or(invalid("no audience"))?;
        let appid = self
            .apps
            .iter()
            .find(|(a, _)| *a == aud)
            .map(|(_, v)| v.clone())
            .ok_or(invalid("unknown audience"))?;
        let exp = claims.exp.ok_or(invalid("no exp"))?;
        if claims.iat.is_some_and(|iat| iat > now + self.leeway) {
            return Err(invalid("issued in the future"));
        }
        if claims.nbf.is_some_and(|nbf| nbf > now + self.leeway) {
            return Err(invalid("not yet valid"));
        }
        if now > exp.saturating_add(self.leeway) {
            return Err(TokenError::Expired);
        }
        let openid = claims
            .sub
            .as_deref()
            .and_then(id_header)
            .ok_or(invalid("bad subject"))?;
        let unionid = match claims.unionid.as_deref() {
            None => None,
            Some(u) => Some(id_header(u).ok_or(invalid("bad unionid"))?),
        };
        let jti = claims
            .jti
            .filter(|j| !j.is_empty() && j.len() <= 128)
            .ok_or(invalid("no jti"))?;
        Ok(Verified {
            openid,
            appid,
            unionid,
            jti: jti.into_owned(),
            exp,
        })
    }
}

/// An id fit for a header: non-empty, bounded, and made of RFC 7235
/// `token68` characters only (WeChat's ids are base64url). So no CR/LF can
/// split a header upstream, and no `,` `;` `"` or space can make an
/// upstream that reads the header as a list see two ids in one.
pub fn id_header_ok(id: &str) -> Option<HeaderValue> {
    id_header(id)
}

pub(crate) fn id_header(id: &str) -> Option<HeaderValue> {
    let token68 = |b: u8| b.is_ascii_alphanumeric() || b"-._~+/=".contains(&b);
    let ok = !id.is_empty() && id.len() <= MAX_ID_BYTES && id.bytes().all(token68);
    ok.then(|| HeaderValue::from_str(id).ok()).flatten()
}

/// 128 random bits from the OS CSPRNG, base64url.
fn new_jti() -> String {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).expect("the OS random source is available");
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Seconds since the Unix epoch.
pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_asymmetric;

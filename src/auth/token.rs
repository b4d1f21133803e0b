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
//! jsonwebtoken encodes and decodes: it signs, checks the signature (with
//! ring, through [`provider`]), parses the claims, and checks that the
//! header's `alg` is the key's, that `iss` is ours, that `aud` is a
//! configured app and that `exp` is there. Around it, wxgate keeps the rules
//! jsonwebtoken does not have or reads more loosely, in [`Keys::verify_uncached`]:
//! before it, exactly three segments, a header of only `alg`, `kid` and
//! `typ` (jsonwebtoken takes `crit`, `jku`, `jwk`, `x5u` and unknown fields
//! and leaves them to its caller), a known `kid`, the key's own `alg`; after it, the
//! claims read strictly (integer times, single-string `iss` and `aud`, none
//! of them twice: jsonwebtoken rounds fractional times and takes arrays),
//! every time against the clock the caller passes in (jsonwebtoken reads the
//! system clock, so its own `exp`/`nbf` checks are off), `iat` not in the
//! future, and ids fit for a header. Base64 is jsonwebtoken's, the same
//! strict engine (no padding, no other alphabet, no stray bits).
//!
//! Cost per token, in instructions (callgrind on `examples/token_cost.rs`,
//! release build, system allocator; two runs each), before (ring called
//! directly, the HMAC key prepared once at load) and with jsonwebtoken:
//!
//! | | before | jsonwebtoken on ring |
//! | --- | --- | --- |
//! | verification from the cache, any algorithm (every later request) | 826–871 | 826–869 |
//! | HS256 verification, not cached | 21.9 k | 42.3 k |
//! | ES256 verification, not cached | 757–762 k | 778–779 k |
//! | EdDSA verification, not cached | 582–592 k | 602–605 k |
//! | HS256 forged signature, refused | 16.0 k | 31.2 k |
//! | ES256 forged signature, refused | 754 k | 765 k |
//! | EdDSA forged signature, refused | 581 k | 590 k |
//! | HS256 mint | 17.5 k | 23.7 k |
//! | ES256 mint | 223 k | 378 k |
//! | EdDSA mint | 222 k | 424 k |
//!
//! A whole proxied request with a cached HS256 token (the benchmark
//! harness's `instr` mode, keep-alive): 26.9 k instructions before, 26.8 k
//! after. The cache keeps the per-request cost where it was. A token's
//! first verification costs about 20 k instructions more, a refused one
//! 10–15 k: jsonwebtoken keys HMAC again for every token (4.5 k; its
//! factories are plain `fn`s, so nothing prepared at load reaches them),
//! parses the header a second time and the claims twice (once for wxgate,
//! once for its own checks), and allocates for each. A mint parses the
//! PKCS#8 key again, and ring derives the public key from it each time:
//! +155 k (ES256) and +200 k (EdDSA), once per login, next to a round trip
//! to WeChat.
//!
//! [`keys`] reads PEM key files; [`crate::auth::jwks`] publishes the public keys.

pub mod keys;
mod provider;

use std::borrow::Cow;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use bytes::Bytes;
use http::HeaderValue;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{DecodingKey, EncodingKey, Validation};
use serde::{Deserialize, Serialize};

use crate::config::{Algorithm, KeyMaterial, TokenConfig};

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

/// The header as wxgate reads it, before jsonwebtoken does: exactly the
/// fields wxgate writes, each once. jsonwebtoken's `Header` takes `crit`,
/// `jku`, `jwk`, `x5u` and `x5c` and leaves them to the caller, and takes
/// any other field, twice if it likes, into its extras (it refuses a
/// duplicate `alg` or `kid` only).
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

/// The claims as wxgate reads them, through jsonwebtoken: the derive
/// refuses any of these claims twice, and the types refuse a fractional or
/// negative time, or an array where a string belongs. Other claims are
/// ignored.
#[derive(Deserialize)]
struct RawClaims {
    #[serde(default)]
    iss: Option<String>,
    #[serde(default)]
    sub: Option<String>,
    #[serde(default)]
    aud: Option<String>,
    #[serde(default)]
    iat: Option<u64>,
    #[serde(default)]
    nbf: Option<u64>,
    #[serde(default)]
    exp: Option<u64>,
    #[serde(default)]
    jti: Option<String>,
    #[serde(default)]
    unionid: Option<String>,
}

struct Key {
    id: String,
    /// The only algorithm its tokens may name.
    algorithm: Algorithm,
    /// The HS256 secret or the raw public key.
    decoding: DecodingKey,
    /// jsonwebtoken's checks for this key's tokens, built once.
    validation: Validation,
    /// HS256: the secret, keyed once, for the signature check that refuses
    /// a forged token before jsonwebtoken's decode (which keys the HMAC
    /// again and parses the token twice more for every token it is given:
    /// about twice the instructions). A flood of garbage tokens costs what
    /// it did before jsonwebtoken; a valid token pays both, once, before
    /// the verified-token cache serves it.
    hmac: Option<ring::hmac::Key>,
}

/// Minting failed: the system random source (ECDSA's nonce), or a key ring
/// would not parse again (it did when the config loaded).
#[derive(Debug, thiserror::Error)]
#[error("cannot sign the token")]
pub struct MintError;

/// The configured keys, ready to sign and verify.
pub struct Keys {
    keys: Vec<Key>,
    signer: usize,
    /// The signing key's header: `typ`, `alg` and `kid`, in that order.
    header: jsonwebtoken::Header,
    signing_key: EncodingKey,
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
    /// Hits and misses of `verified`, for the metrics; shared by every
    /// config's keys so that a reload does not reset them.
    cache_counts: Arc<CacheCounts>,
}

/// How often [`Keys::verify`] found a token in its cache: two relaxed adds'
/// worth of bookkeeping, read when the metrics are scraped.
#[derive(Debug, Default)]
pub struct CacheCounts {
    hits: AtomicU64,
    misses: AtomicU64,
}

impl CacheCounts {
    pub fn hits(&self) -> u64 {
        self.hits.load(Relaxed)
    }

    pub fn misses(&self) -> u64 {
        self.misses.load(Relaxed)
    }
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
        provider::install();
        let apps: Vec<(String, HeaderValue)> = appids
            .map(|a| {
                (
                    a.to_owned(),
                    HeaderValue::from_str(a).expect("appids are validated"),
                )
            })
            .collect();
        let appids: Vec<&str> = apps.iter().map(|(a, _)| a.as_str()).collect();
        let keys = config
            .keys
            .iter()
            .map(|k| {
                let mut validation = Validation::new(k.algorithm.jose());
                validation.set_required_spec_claims(&["iss", "aud", "exp"]);
                validation.set_issuer(&[&config.issuer]);
                validation.set_audience(&appids);
                // They read the system clock; wxgate checks times against
                // the `now` it is given.
                validation.validate_exp = false;
                validation.validate_nbf = false;
                Key {
                    id: k.id.clone(),
                    algorithm: k.algorithm,
                    decoding: match (&k.material, k.material.public_key()) {
                        (KeyMaterial::Secret(secret), _) => {
                            DecodingKey::from_secret(secret.expose().as_bytes())
                        }
                        (_, Some(public)) => public.decoding_key(),
                        (_, None) => unreachable!("asymmetric keys have a public key"),
                    },
                    validation,
                    hmac: match &k.material {
                        KeyMaterial::Secret(secret) => Some(ring::hmac::Key::new(
                            ring::hmac::HMAC_SHA256,
                            secret.expose().as_bytes(),
                        )),
                        _ => None,
                    },
                }
            })
            .collect();
        let signer = config
            .keys
            .iter()
            .position(|k| !k.verify_only)
            .expect("config validation ensures a signing key");
        let signing = &config.keys[signer];
        let signing_key = match &signing.material {
            KeyMaterial::Secret(secret) => EncodingKey::from_secret(secret.expose().as_bytes()),
            KeyMaterial::Private(key) => key.encoding_key().clone(),
            KeyMaterial::Public(_) => unreachable!("config validation: signing keys are private"),
        };
        let mut header = jsonwebtoken::Header::new(signing.algorithm.jose());
        header.kid = Some(signing.id.clone());
        Keys {
            keys,
            signer,
            header,
            signing_key,
            jwks: Bytes::from(crate::auth::jwks::document(&config.keys)),
            issuer: config.issuer.clone(),
            leeway: config.leeway.as_secs(),
            ttl: config.ttl,
            apps,
            // foldhash (seeded per process) hashes a token in a fraction of
            // SipHash's time; its weaker flooding resistance does not
            // matter here, as only tokens wxgate signed are ever inserted.
            verified: moka::sync::Cache::builder()
                .max_capacity(VERIFIED_CACHE_ENTRIES)
                .time_to_idle(VERIFIED_CACHE_IDLE)
                .build_with_hasher(foldhash::fast::RandomState::default()),
            cache_counts: Arc::default(),
        }
    }

    /// Counts this cache's hits and misses into `counts` (the gateway's,
    /// kept across reloads) instead of counts of its own.
    pub fn count_cache_in(mut self, counts: Arc<CacheCounts>) -> Keys {
        self.cache_counts = counts;
        self
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
        let token = jsonwebtoken::encode(&self.header, &claims, &self.signing_key)
            .map_err(|_| MintError)?;
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
            self.cache_counts.hits.fetch_add(1, Relaxed);
            if now > verified.exp.saturating_add(self.leeway) {
                return Err(TokenError::Expired);
            }
            return Ok(verified);
        }
        self.cache_counts.misses.fetch_add(1, Relaxed);
        let verified = Arc::new(self.verify_uncached(token, now)?);
        self.verified.insert(token.to_owned(), verified.clone());
        Ok(verified)
    }

    /// Checks everything, in an order that reads no claim before the
    /// signature holds: wxgate's header rules, then jsonwebtoken (signature,
    /// claims), then wxgate's claim rules.
    pub fn verify_uncached(&self, token: &str, now: u64) -> Result<Verified, TokenError> {
        if token.len() > MAX_TOKEN_BYTES {
            return Err(invalid("too long"));
        }
        // jsonwebtoken splits from the right, so `h.p.s.s` would be read as
        // a header `h.p`: refused here, plainly.
        let mut parts = token.split('.');
        let (Some(header_b64), Some(_), Some(_), None) =
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

        if let Some(hmac) = &key.hmac {
            let (input, signature) = token.rsplit_once('.').expect("three segments");
            let mut sig = [0u8; 64];
            let n = URL_SAFE_NO_PAD
                .decode_slice(signature, &mut sig)
                .map_err(|_| invalid("bad encoding"))?;
            ring::hmac::verify(hmac, input.as_bytes(), &sig[..n])
                .map_err(|_| invalid("bad signature"))?;
        }
        // The signature with the key's algorithm only, then the claims
        // parsed into `RawClaims`, then jsonwebtoken's `iss`, `aud` and
        // `exp`-present checks.
        let claims = jsonwebtoken::decode::<RawClaims>(token, &key.decoding, &key.validation)
            .map_err(|e| refused_by_jsonwebtoken(e.kind()))?
            .claims;
        // Checked again, all of them: jsonwebtoken's checks are a second
        // lock, not the only one.
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
            jti,
            exp,
        })
    }
}

/// jsonwebtoken's refusals, in wxgate's words. When two required claims
/// are missing, which one jsonwebtoken names first is not fixed.
fn refused_by_jsonwebtoken(kind: &ErrorKind) -> TokenError {
    invalid(match kind {
        ErrorKind::InvalidSignature => "bad signature",
        ErrorKind::Base64(_) => "bad encoding",
        // Only the claims: the header was parsed before, more strictly.
        ErrorKind::Json(_) | ErrorKind::Utf8(_) => "bad claims",
        ErrorKind::InvalidAlgorithm => "algorithm not allowed",
        ErrorKind::InvalidIssuer => "wrong issuer",
        ErrorKind::InvalidAudience => "unknown audience",
        ErrorKind::MissingRequiredClaim(claim) => match claim.as_str() {
            "iss" => "wrong issuer",
            "aud" => "no audience",
            "exp" => "no exp",
            _ => "missing claim",
        },
        _ => "refused",
    })
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

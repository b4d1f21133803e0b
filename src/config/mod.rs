//! `gateway.toml`, in two stages: [`raw`] is the file as written (serde, no
//! unknown keys, `${VAR}` interpolation), [`Config`] is what the gateway runs
//! on: real types, defaults filled in, every cross-key rule checked. All of
//! it happens at start-up or reload, never while serving a request.

mod build;
mod checks;
mod internal;
mod interp;
mod keys;
mod locate;
mod raw;
mod redact;
mod routes;

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use http::{HeaderName, HeaderValue, Method};
use ipnet::IpNet;

pub use crate::auth::token::keys::Algorithm;
use crate::auth::token::keys::{self as key_files, PrivateKey, PublicKey};
use crate::http::path;
use crate::secret::Secret;
use crate::server::tls::TlsFile;
pub use crate::server::tls::{CaFile, ServerTls};
use build::*;
use interp::{parse_duration, SecretStr, Str};
use raw::*;

/// The default for every key that has one, in one place.
pub mod defaults {
    pub const REQUEST_TIMEOUT: &str = "60s";
    pub const HEADER_TIMEOUT: &str = "10s";
    pub const MAX_HEADER_BYTES: u64 = 16 * 1024;
    pub const SHUTDOWN_GRACE: &str = "20s";
    pub const MAX_CONNECTIONS: u64 = 10_000;
    pub const IDLE_TIMEOUT: &str = "60s";
    pub const CONNECT_TIMEOUT: &str = "5s";
    pub const WECHAT_API_BASE: &str = "https://api.weixin.qq.com";
    pub const WECHAT_TIMEOUT: &str = "5s";
    pub const LOGIN_PATH: &str = "/auth/login";
    pub const SESSION_PATH: &str = "/auth/session";
    pub const LOGOUT_PATH: &str = "/auth/logout";
    pub const JWKS_PATH: &str = "/.well-known/jwks.json";
    pub const VERIFY_PATH: &str = "/auth/verify";
    pub const TOKEN_HEADER: &str = "Authorization";
    pub const LOGIN_RATE_LIMIT: &str = "60/min";
    pub const ALGORITHM: &str = "HS256";
    pub const TTL: &str = "2h";
    pub const ISSUER: &str = "wxgate";
    pub const LEEWAY: &str = "30s";
    pub const OPENID_HEADER: &str = "X-WX-OpenID";
    pub const UNIONID_HEADER: &str = "X-WX-UnionID";
    pub const APPID_HEADER: &str = "X-WX-AppID";
    pub const STORE_CAPACITY: u64 = 1_000_000;
    pub const STORE_KEY_PREFIX: &str = "wxgate:";
    pub const STORE_TIMEOUT: &str = "500ms";
    pub const LOG_LEVEL: &str = "info";
    pub const INTERNAL_LISTEN: &str = "127.0.0.1:9402";
    pub const INTERNAL_ALLOW: [&str; 2] = ["127.0.0.0/8", "::1/128"];
    pub const INTERNAL_MAX_BODY: u64 = 10 * 1024 * 1024;
    pub const DECRYPT_MAX_AGE: &str = "10m";
}

type Result<T> = std::result::Result<T, ConfigError>;

/// Longest duration any key accepts.
const MAX_DURATION: Duration = Duration::from_secs(10 * 365 * 24 * 3600);

/// Longest token life, for `token.ttl` and `wxgate token --ttl` alike: a
/// token cannot be recalled but by its `jti`, and a client that logs in
/// again every month costs one `wx.login`.
pub const MAX_TOKEN_TTL: Duration = Duration::from_secs(30 * 24 * 3600);

/// Longest `token.leeway`: past this, expiry is effectively off.
pub const MAX_LEEWAY: Duration = Duration::from_secs(10 * 60);

/// Why `ttl` cannot be a token's life, if it cannot.
pub fn token_ttl_problem(ttl: Duration) -> Option<String> {
    if ttl < Duration::from_secs(1) {
        Some("must be at least 1s".to_owned())
    } else if ttl > MAX_TOKEN_TTL {
        Some("must be at most 30 days, a token's longest life".to_owned())
    } else {
        None
    }
}

/// HS256 keys shorter than this are refused (RFC 7518 §3.2: key >= hash size).
pub const MIN_HMAC_KEY_BYTES: usize = 32;

/// A config that failed to load: which file, where, what is wrong. Never
/// carries a secret's value.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{file}{}: {key}{}{message}", line.map(|l| format!(":{l}")).unwrap_or_default(), if key.is_empty() { "" } else { ": " })]
pub struct ConfigError {
    pub file: String,
    pub line: Option<usize>,
    pub key: String,
    pub message: String,
}

/// The validated runtime configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// The file it came from, for messages and reloads.
    pub source: PathBuf,
    pub server: ServerConfig,
    pub admin: Option<AdminConfig>,
    pub wechat: WeChatConfig,
    pub apps: Vec<AppConfig>,
    pub auth: AuthConfig,
    pub token: TokenConfig,
    pub identity: IdentityConfig,
    pub store: StoreConfig,
    /// `None`: no internal API.
    pub internal: Option<InternalConfig>,
    pub routes: Vec<RouteConfig>,
    pub log: LogConfig,
    pub dev: DevConfig,
}

#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    /// Certificate and key for HTTPS (h2 and http/1.1 by ALPN), loaded;
    /// `None` serves plain HTTP.
    pub tls: Option<ServerTls>,
    /// Default upstream timeout for routes without their own.
    pub request_timeout: Duration,
    /// Time allowed to receive a complete request head: the first from
    /// accept, a later HTTP/1 one from the previous answer.
    pub header_timeout: Duration,
    pub max_header_bytes: usize,
    /// Peers whose `X-Forwarded-For` is believed.
    pub trusted_proxies: Vec<IpNet>,
    pub shutdown_grace: Duration,
    /// Connections beyond this wait in the kernel's accept queue.
    pub max_connections: usize,
    /// A connection with no request in flight for this long after its last
    /// answer is closed gracefully (HTTP/2 above all: HTTP/1 is also
    /// bounded by `header_timeout` while it waits for the next head).
    pub idle_timeout: Duration,
    /// Time allowed to open a connection to an upstream.
    pub connect_timeout: Duration,
}

#[derive(Debug, Clone)]
pub struct AdminConfig {
    pub listen: SocketAddr,
}

#[derive(Debug, Clone)]
pub struct WeChatConfig {
    /// Without a trailing slash.
    pub api_base: String,
    pub timeout: Duration,
}

#[derive(Debug, Clone)]
pub struct AppConfig {
    pub appid: String,
    pub secret: Secret,
}

#[derive(Debug, Clone)]
pub struct AuthConfig {
    pub login_path: String,
    pub session_path: String,
    pub logout_path: String,
    /// Where the public keys are published as a JWK Set.
    pub jwks_path: String,
    /// The forward-auth check (see `forward_auth`); matches its sub-paths too.
    pub verify_path: String,
    pub token_header: TokenHeader,
    /// `None` when set to "off".
    pub login_rate_limit: Option<RateLimit>,
}

/// Where the client puts its token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenHeader {
    /// `Authorization: Bearer <token>`.
    Bearer,
    /// Any other header, carrying the bare token.
    Custom(HeaderName),
}

impl TokenHeader {
    pub fn name(&self) -> HeaderName {
        match self {
            TokenHeader::Bearer => http::header::AUTHORIZATION,
            TokenHeader::Custom(name) => name.clone(),
        }
    }
}

/// `N` requests per `per`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    pub requests: u32,
    pub per: Duration,
}

#[derive(Debug, Clone)]
pub struct TokenConfig {
    /// The algorithm of keys that do not name their own.
    pub algorithm: Algorithm,
    pub ttl: Duration,
    pub issuer: String,
    pub leeway: Duration,
    /// In file order; the first one that is not `verify_only` signs.
    pub keys: Vec<KeyConfig>,
}

#[derive(Debug, Clone)]
pub struct KeyConfig {
    pub id: String,
    /// `algorithm` of the key, else of `[token]`; fixed for its tokens.
    pub algorithm: Algorithm,
    pub material: KeyMaterial,
    /// Verifies tokens, never signs: an old key kept during a rotation.
    pub verify_only: bool,
}

/// What a key is made of; `Debug` never shows it.
#[derive(Debug, Clone)]
pub enum KeyMaterial {
    /// HS256: the shared secret.
    Secret(Secret),
    /// ES256 / EdDSA: a private key, which can sign and verify.
    Private(std::sync::Arc<PrivateKey>),
    /// ES256 / EdDSA, `verify_only` only: the public key.
    Public(PublicKey),
}

impl KeyMaterial {
    /// The public key, for asymmetric keys.
    pub fn public_key(&self) -> Option<&PublicKey> {
        match self {
            KeyMaterial::Secret(_) => None,
            KeyMaterial::Private(key) => Some(key.public()),
            KeyMaterial::Public(key) => Some(key),
        }
    }
}

#[derive(Debug, Clone)]
pub struct IdentityConfig {
    pub openid_header: HeaderName,
    pub unionid_header: HeaderName,
    pub appid_header: HeaderName,
}

#[derive(Debug, Clone, PartialEq)]
pub struct StoreConfig {
    /// Most entries of each kind kept in memory (the revocations every
    /// replica keeps included, whichever the backend).
    pub capacity: u64,
    /// `Some` with `backend = "redis"`.
    pub redis: Option<RedisConfig>,
}

/// The Redis backend's settings (`[store]` with `backend = "redis"`).
#[derive(Debug, Clone, PartialEq)]
pub struct RedisConfig {
    /// `redis://` or `rediss://`; a secret because it may carry a password.
    pub url: Secret,
    /// Overrides a password in the URL.
    pub password: Option<Secret>,
    /// Every key and channel wxgate uses starts with it.
    pub key_prefix: String,
    /// The longest wait for one Redis command (and for a connection).
    pub timeout: Duration,
    pub on_error: OnStoreError,
    /// 32 bytes: seals what wxgate writes to Redis, keys the code hashes.
    pub encryption_key: Secret,
}

/// What a proxied request gets while Redis cannot answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnStoreError {
    /// Checked against the revocations already known.
    Open,
    /// 503 `store_unavailable`.
    Closed,
}

/// `[internal]`: the API that lends the access_token and decrypts for the
/// operator's own services (see `internal`).
#[derive(Debug, Clone, PartialEq)]
pub struct InternalConfig {
    pub listen: SocketAddr,
    /// Peers that may call it; every other gets 403 before anything else.
    pub allow: Vec<IpNet>,
    /// When set, callers must send `Authorization: Bearer <token>`.
    pub token: Option<Secret>,
    /// Largest request body relayed to WeChat, and largest answer relayed
    /// back (both are held whole: a retry sends the body again).
    pub max_body: usize,
    /// Oldest `watermark.timestamp` that decrypt accepts.
    pub decrypt_max_age: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMode {
    None,
    Optional,
    Required,
}

#[derive(Debug, Clone)]
pub struct RouteConfig {
    /// Normalized, no trailing `/` (except `/` itself).
    pub path: String,
    pub upstream: Upstream,
    pub auth: AuthMode,
    /// `None` allows every method.
    pub methods: Option<Vec<Method>>,
    /// The `Allow` header for a 405, built once.
    pub allow: Option<HeaderValue>,
    /// Lowercase, without port.
    pub host: Option<String>,
    pub strip_prefix: bool,
    pub timeout: Duration,
    pub forward_token: bool,
    /// `None`: tokens of every configured app.
    pub apps: Option<Vec<String>>,
}

/// Where a route forwards to.
#[derive(Debug, Clone)]
pub struct Upstream {
    pub scheme: http::uri::Scheme,
    pub authority: http::uri::Authority,
    /// The upstream URL's own path without a trailing `/` ("" for none).
    pub base_path: String,
    /// `Host` for forwarded requests, built once.
    pub host_header: HeaderValue,
    /// `https` only: the route's `ca_file`; `None` trusts the system store.
    pub ca_file: Option<CaFile>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Plain,
    Json,
}

#[derive(Debug, Clone)]
pub struct LogConfig {
    pub level: String,
    pub format: LogFormat,
    /// One line per request on target `wxgate::access`.
    pub access: bool,
    /// How log lines show an openid (personal data under PIPL).
    pub openid: OpenidLogging,
}

/// `log.openid`; see [`crate::ops::openid_log`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OpenidLogging {
    Plain,
    /// With `log.openid_key`, the same hash on every replica; without, a
    /// key made at start-up.
    Hashed {
        key: Option<Secret>,
    },
    Off,
}

#[derive(Debug, Clone, Default)]
pub struct DevConfig {
    /// Answer logins locally: code `dev-<openid>` (or `dev-<openid>.<any
    /// suffix>`, a fresh code for the same user) logs in as `<openid>`.
    pub simulate_wechat: bool,
    /// Start a built-in upstream that echoes what it receives.
    pub echo_upstream: Option<SocketAddr>,
}

impl Config {
    /// Reads and validates the file at `path`.
    pub fn load(path: &Path) -> Result<Config> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            file: path.display().to_string(),
            line: None,
            key: String::new(),
            message: format!("cannot read the config file: {e}"),
        })?;
        Self::parse(&text, path)
    }

    /// Validates `text` as if read from `path`, with the process environment.
    pub fn parse(text: &str, path: &Path) -> Result<Config> {
        Self::parse_with_env(text, path, None)
    }

    /// Validates `text` with `env` in place of the process environment
    /// (for tests: they must not race on real environment variables).
    pub fn parse_with_env(
        text: &str,
        path: &Path,
        env: Option<HashMap<String, String>>,
    ) -> Result<Config> {
        let file = path.display().to_string();
        let raw: RawConfig = interp::with_env(env, || toml::from_str(text))
            .map_err(|e| toml_error(&file, text, &e))?;
        let base_dir = path.parent().unwrap_or(Path::new("."));
        let lines = locate::Locator::new(text);
        Builder {
            file: &file,
            base_dir,
            lines: &lines,
            entry: None,
        }
        .build(raw, path)
    }

    /// Every appid that tokens may carry.
    pub fn appids(&self) -> impl Iterator<Item = &str> {
        self.apps.iter().map(|a| a.appid.as_str())
    }
}

/// Turns a toml error into one that names file, line and key, without the
/// source snippet toml would print (it may hold a secret).
fn toml_error(file: &str, text: &str, e: &toml::de::Error) -> ConfigError {
    let (line, key, value) = match e.span() {
        Some(span) => {
            let start = span.start.min(text.len());
            let line = text[..start].matches('\n').count() + 1;
            let value = text.get(start..span.end.min(text.len())).unwrap_or("");
            (Some(line), key_at(text, line), value)
        }
        None => (None, String::new(), ""),
    };
    let message = redact::message_for(&key, e.message(), value).into_owned();
    ConfigError {
        file: file.to_owned(),
        line,
        key,
        message,
    }
}

/// The dotted key written on `line` (1-based), using the nearest table header
/// above it: `[[token.keys]]` + `secret = …` gives `token.keys.secret`.
fn key_at(text: &str, line: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    let Some(this) = lines.get(line.saturating_sub(1)) else {
        return String::new();
    };
    let this = this.trim();
    let table = lines[..line.saturating_sub(1)]
        .iter()
        .rev()
        .map(|l| l.trim())
        .find(|l| l.starts_with('['))
        .map(|l| l.trim_matches(|c| c == '[' || c == ']').trim().to_owned());
    if this.starts_with('[') {
        return this
            .trim_matches(|c| c == '[' || c == ']')
            .trim()
            .to_owned();
    }
    let name = this.split('=').next().unwrap_or("").trim();
    match table {
        Some(t) if !name.is_empty() => format!("{t}.{name}"),
        Some(t) => t,
        None => name.to_owned(),
    }
}

impl fmt::Display for AuthMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            AuthMode::None => "none",
            AuthMode::Optional => "optional",
            AuthMode::Required => "required",
        })
    }
}

#[cfg(test)]
mod tests;

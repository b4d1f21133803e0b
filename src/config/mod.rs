//! `gateway.toml`, in two stages: [`raw`] is the file as written (serde, no
//! unknown keys, `${VAR}` interpolation), [`Config`] is what the gateway runs
//! on: real types, defaults filled in, every cross-key rule checked. All of
//! it happens at start-up or reload, never while serving a request.

mod interp;
mod keys;
mod raw;

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use http::{HeaderName, HeaderValue, Method};
use ipnet::IpNet;

use crate::path;
use crate::secret::Secret;
use crate::tls::TlsFile;
pub use crate::tls::{CaFile, ServerTls};
use crate::token::keys::{self as key_files, PrivateKey, PublicKey};
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
    pub const LOG_LEVEL: &str = "info";
}

type Result<T> = std::result::Result<T, ConfigError>;

/// Longest duration any key accepts.
const MAX_DURATION: Duration = Duration::from_secs(10 * 365 * 24 * 3600);

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
    /// Time allowed to receive a complete request head.
    pub header_timeout: Duration,
    pub max_header_bytes: usize,
    /// Peers whose `X-Forwarded-For` is believed.
    pub trusted_proxies: Vec<IpNet>,
    pub shutdown_grace: Duration,
    /// Connections beyond this wait in the kernel's accept queue.
    pub max_connections: usize,
    /// A connection that starts no request for this long is closed
    /// gracefully (HTTP/2 above all: HTTP/1 is also bounded by
    /// `header_timeout` while it waits for the next head).
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

/// A key's signing algorithm. Each key has exactly one, and a token is
/// verified with its key's algorithm whatever its header says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    HS256,
    /// ECDSA on P-256 with SHA-256.
    ES256,
    /// Ed25519.
    EdDSA,
}

impl Algorithm {
    /// The name written in the JWS header's `alg` (and in the config).
    pub fn name(self) -> &'static str {
        match self {
            Algorithm::HS256 => "HS256",
            Algorithm::ES256 => "ES256",
            Algorithm::EdDSA => "EdDSA",
        }
    }

    /// Accepts the JOSE names; `keygen` also takes them in lowercase.
    pub fn from_name(name: &str) -> Option<Algorithm> {
        [Algorithm::HS256, Algorithm::ES256, Algorithm::EdDSA]
            .into_iter()
            .find(|a| a.name().eq_ignore_ascii_case(name))
    }
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

#[derive(Debug, Clone)]
pub struct StoreConfig {
    pub capacity: u64,
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
}

#[derive(Debug, Clone, Default)]
pub struct DevConfig {
    /// Answer logins locally: code `dev-<openid>` logs in as `<openid>`.
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
        Builder { file, base_dir }.build(raw, path)
    }

    /// Every appid that tokens may carry.
    pub fn appids(&self) -> impl Iterator<Item = &str> {
        self.apps.iter().map(|a| a.appid.as_str())
    }
}

/// Turns a toml error into one that names file, line and key, without the
/// source snippet toml would print (it may hold a secret).
fn toml_error(file: &str, text: &str, e: &toml::de::Error) -> ConfigError {
    let (line, key) = match e.span() {
        Some(span) => {
            let line = text[..span.start.min(text.len())].matches('\n').count() + 1;
            (Some(line), key_at(text, line))
        }
        None => (None, String::new()),
    };
    ConfigError {
        file: file.to_owned(),
        line,
        key,
        message: e.message().to_owned(),
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

struct Builder<'a> {
    file: String,
    base_dir: &'a Path,
}

impl Builder<'_> {
    fn err(&self, key: impl Into<String>, message: impl Into<String>) -> ConfigError {
        ConfigError {
            file: self.file.clone(),
            line: None,
            key: key.into(),
            message: message.into(),
        }
    }

    fn duration(&self, key: &str, value: Option<Str>, default: &str) -> Result<Duration> {
        let text = value.map(|s| s.0).unwrap_or_else(|| default.to_owned());
        let duration = parse_duration(&text).map_err(|m| self.err(key, m))?;
        // Deadlines are `now + duration`: an absurd one would overflow.
        if duration > MAX_DURATION {
            return Err(self.err(key, format!("`{text}` is longer than 10 years")));
        }
        Ok(duration)
    }

    fn addr(&self, key: &str, value: &Str) -> Result<SocketAddr> {
        value.0.parse().map_err(|_| {
            self.err(
                key,
                format!("`{}` is not an address like \"0.0.0.0:8080\"", value.0),
            )
        })
    }

    fn header_name(&self, key: &str, value: Option<Str>, default: &str) -> Result<HeaderName> {
        let text = value.map(|s| s.0).unwrap_or_else(|| default.to_owned());
        HeaderName::try_from(text.as_str())
            .map_err(|_| self.err(key, format!("`{text}` is not a valid header name")))
    }

    fn endpoint_path(&self, key: &str, value: Option<Str>, default: &str) -> Result<String> {
        let text = value.map(|s| s.0).unwrap_or_else(|| default.to_owned());
        match path::normalize(&text) {
            Ok(p) if p == text && text.starts_with('/') => Ok(text),
            _ => Err(self.err(
                key,
                format!("`{text}` must be an absolute, normalized path"),
            )),
        }
    }

    /// `secret` or `secret_file`, exactly one.
    fn secret(
        &self,
        key: &str,
        secret: Option<SecretStr>,
        secret_file: Option<Str>,
    ) -> Result<Secret> {
        match (secret, secret_file) {
            (Some(s), None) => Ok(s.0),
            (None, Some(file)) => {
                let path = self.base_dir.join(&file.0);
                let text = std::fs::read_to_string(&path).map_err(|e| {
                    self.err(
                        format!("{key}_file"),
                        format!("cannot read {}: {e}", path.display()),
                    )
                })?;
                Ok(Secret::new(text.trim_end_matches(['\r', '\n'])))
            }
            (Some(_), Some(_)) => {
                Err(self.err(key, format!("set either {key} or {key}_file, not both")))
            }
            (None, None) => Err(self.err(key, format!("{key} or {key}_file is required"))),
        }
    }

    fn build(&self, raw: RawConfig, source: &Path) -> Result<Config> {
        let server = self.server(raw.server)?;
        let admin = raw
            .admin
            .map(|a| {
                Ok(AdminConfig {
                    listen: self.addr("admin.listen", &a.listen)?,
                })
            })
            .transpose()?;
        let wechat = self.wechat(raw.wechat)?;
        let apps = self.apps(raw.apps)?;
        let auth = self.auth(raw.auth)?;
        let token = self.token(raw.token)?;
        let identity = self.identity(raw.identity)?;
        let store = self.store(raw.store)?;
        let routes = self.routes(raw.routes, &server, &apps)?;
        let log = self.log(raw.log)?;
        let dev = self.dev(raw.dev, &server, admin.as_ref())?;

        if let TokenHeader::Custom(name) = &auth.token_header {
            if crate::headers::is_identity_name(name.as_str(), &identity) {
                return Err(self.err(
                    "auth.token_header",
                    format!("`{name}` looks like an identity header, which wxgate strips"),
                ));
            }
        }
        let endpoints = [
            &auth.login_path,
            &auth.session_path,
            &auth.logout_path,
            &auth.jwks_path,
        ];
        if endpoints.iter().collect::<HashSet<_>>().len() != endpoints.len() {
            return Err(self.err(
                "auth",
                "login_path, session_path, logout_path and jwks_path must differ",
            ));
        }
        // The verify endpoint owns every path below it (Envoy's path_prefix).
        if auth.verify_path == "/"
            || endpoints
                .iter()
                .any(|e| crate::router::prefix_matches(&auth.verify_path, e))
        {
            return Err(self.err(
                "auth.verify_path",
                format!(
                    "`{}` must not be `/` nor contain the login, session, logout or JWKS path",
                    auth.verify_path
                ),
            ));
        }

        Ok(Config {
            source: source.to_path_buf(),
            server,
            admin,
            wechat,
            apps,
            auth,
            token,
            identity,
            store,
            routes,
            log,
            dev,
        })
    }

    fn server(&self, s: RawServer) -> Result<ServerConfig> {
        let tls = match (s.tls_cert, s.tls_key) {
            (None, None) => None,
            (Some(cert), Some(key)) => Some(
                ServerTls::load(self.base_dir.join(cert.0), self.base_dir.join(key.0)).map_err(
                    |(file, m)| match file {
                        TlsFile::Cert => self.err("server.tls_cert", m),
                        TlsFile::Key => self.err("server.tls_key", m),
                    },
                )?,
            ),
            _ => {
                return Err(self.err(
                    "server.tls_cert",
                    "tls_cert and tls_key go together: set both or neither",
                ))
            }
        };
        let max_header_bytes = s.max_header_bytes.unwrap_or(defaults::MAX_HEADER_BYTES);
        if !(8192..=1024 * 1024).contains(&max_header_bytes) {
            return Err(self.err(
                "server.max_header_bytes",
                "must be between 8192 and 1048576",
            ));
        }
        let trusted_proxies = s
            .trusted_proxies
            .unwrap_or_default()
            .into_iter()
            .map(|p| parse_net(&p.0).map_err(|m| self.err("server.trusted_proxies", m)))
            .collect::<Result<Vec<_>>>()?;
        let max_connections = s.max_connections.unwrap_or(defaults::MAX_CONNECTIONS);
        if max_connections == 0 {
            return Err(self.err("server.max_connections", "must be at least 1"));
        }
        Ok(ServerConfig {
            listen: self.addr("server.listen", &s.listen)?,
            tls,
            request_timeout: self.duration(
                "server.request_timeout",
                s.request_timeout,
                defaults::REQUEST_TIMEOUT,
            )?,
            header_timeout: self.duration(
                "server.header_timeout",
                s.header_timeout,
                defaults::HEADER_TIMEOUT,
            )?,
            max_header_bytes: max_header_bytes as usize,
            trusted_proxies,
            shutdown_grace: self.duration(
                "server.shutdown_grace",
                s.shutdown_grace,
                defaults::SHUTDOWN_GRACE,
            )?,
            max_connections: max_connections as usize,
            idle_timeout: self.duration(
                "server.idle_timeout",
                s.idle_timeout,
                defaults::IDLE_TIMEOUT,
            )?,
            connect_timeout: self.duration(
                "server.connect_timeout",
                s.connect_timeout,
                defaults::CONNECT_TIMEOUT,
            )?,
        })
    }

    fn wechat(&self, w: RawWeChat) -> Result<WeChatConfig> {
        let api_base = w
            .api_base
            .map(|s| s.0)
            .unwrap_or_else(|| defaults::WECHAT_API_BASE.to_owned());
        let ok = (api_base.starts_with("https://") || api_base.starts_with("http://"))
            && api_base
                .parse::<http::Uri>()
                .is_ok_and(|u| u.host().is_some() && u.query().is_none());
        if !ok {
            return Err(self.err(
                "wechat.api_base",
                format!("`{api_base}` is not an http(s) URL without a query"),
            ));
        }
        Ok(WeChatConfig {
            api_base: api_base.trim_end_matches('/').to_owned(),
            timeout: self.duration("wechat.timeout", w.timeout, defaults::WECHAT_TIMEOUT)?,
        })
    }

    fn apps(&self, raw: Vec<RawApp>) -> Result<Vec<AppConfig>> {
        if raw.is_empty() {
            return Err(self.err("apps", "at least one [[apps]] entry is required"));
        }
        let mut seen = HashSet::new();
        raw.into_iter()
            .map(|a| {
                let appid = a.appid.0;
                let valid = !appid.is_empty()
                    && appid.len() <= 64
                    && appid
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'_');
                if !valid {
                    return Err(self.err(
                        "apps.appid",
                        format!("`{appid}` is not an appid (letters, digits and _ only)"),
                    ));
                }
                if !seen.insert(appid.clone()) {
                    return Err(self.err("apps.appid", format!("`{appid}` appears twice")));
                }
                let secret = self.secret("apps.secret", a.secret, a.secret_file)?;
                if secret.is_empty() {
                    return Err(
                        self.err("apps.secret", format!("the secret of app {appid} is empty"))
                    );
                }
                Ok(AppConfig { appid, secret })
            })
            .collect()
    }

    fn auth(&self, a: RawAuth) -> Result<AuthConfig> {
        let header = a
            .token_header
            .map(|s| s.0)
            .unwrap_or_else(|| defaults::TOKEN_HEADER.to_owned());
        let token_header = if header.eq_ignore_ascii_case("authorization") {
            TokenHeader::Bearer
        } else {
            TokenHeader::Custom(self.header_name("auth.token_header", Some(Str(header)), "")?)
        };
        let rate = a
            .login_rate_limit
            .map(|s| s.0)
            .unwrap_or_else(|| defaults::LOGIN_RATE_LIMIT.to_owned());
        let login_rate_limit = if rate == "off" {
            None
        } else {
            Some(parse_rate(&rate).map_err(|m| self.err("auth.login_rate_limit", m))?)
        };
        Ok(AuthConfig {
            login_path: self.endpoint_path(
                "auth.login_path",
                a.login_path,
                defaults::LOGIN_PATH,
            )?,
            session_path: self.endpoint_path(
                "auth.session_path",
                a.session_path,
                defaults::SESSION_PATH,
            )?,
            logout_path: self.endpoint_path(
                "auth.logout_path",
                a.logout_path,
                defaults::LOGOUT_PATH,
            )?,
            jwks_path: self.endpoint_path("auth.jwks_path", a.jwks_path, defaults::JWKS_PATH)?,
            verify_path: self.endpoint_path(
                "auth.verify_path",
                a.verify_path,
                defaults::VERIFY_PATH,
            )?,
            token_header,
            login_rate_limit,
        })
    }

    fn algorithm(&self, key: &str, name: &str) -> Result<Algorithm> {
        Algorithm::from_name(name)
            .filter(|a| a.name() == name)
            .ok_or_else(|| {
                self.err(
                    key,
                    format!("`{name}` is not supported; use \"HS256\", \"ES256\" or \"EdDSA\""),
                )
            })
    }

    fn token(&self, t: RawToken) -> Result<TokenConfig> {
        let algorithm = self.algorithm(
            "token.algorithm",
            t.algorithm.as_ref().map_or(defaults::ALGORITHM, |s| &s.0),
        )?;
        if t.keys.is_empty() {
            return Err(self.err(
                "token.keys",
                "at least one [[token.keys]] entry is required",
            ));
        }
        let mut ids = HashSet::new();
        let keys = t
            .keys
            .into_iter()
            .map(|k| {
                let id = k.id.0.clone();
                if id.is_empty() || id.len() > 64 || !id.bytes().all(|b| b.is_ascii_graphic()) {
                    return Err(self.err(
                        "token.keys.id",
                        format!("`{id}` must be 1 to 64 printable ASCII characters"),
                    ));
                }
                if !ids.insert(id.clone()) {
                    return Err(self.err("token.keys.id", format!("`{id}` appears twice")));
                }
                self.key(k, algorithm)
            })
            .collect::<Result<Vec<_>>>()?;
        if keys.iter().all(|k| k.verify_only) {
            return Err(self.err(
                "token.keys",
                "every key is verify_only: one key must be able to sign",
            ));
        }
        let ttl = self.duration("token.ttl", t.ttl, defaults::TTL)?;
        if ttl.as_secs() == 0 {
            return Err(self.err("token.ttl", "must be at least 1s"));
        }
        let issuer = t
            .issuer
            .map_or_else(|| defaults::ISSUER.to_owned(), |s| s.0);
        if issuer.is_empty() {
            return Err(self.err("token.issuer", "must not be empty"));
        }
        Ok(TokenConfig {
            algorithm,
            ttl,
            issuer,
            leeway: self.duration("token.leeway", t.leeway, defaults::LEEWAY)?,
            keys,
        })
    }

    fn identity(&self, i: RawIdentity) -> Result<IdentityConfig> {
        let identity = IdentityConfig {
            openid_header: self.header_name(
                "identity.openid_header",
                i.openid_header,
                defaults::OPENID_HEADER,
            )?,
            unionid_header: self.header_name(
                "identity.unionid_header",
                i.unionid_header,
                defaults::UNIONID_HEADER,
            )?,
            appid_header: self.header_name(
                "identity.appid_header",
                i.appid_header,
                defaults::APPID_HEADER,
            )?,
        };
        let names = [
            &identity.openid_header,
            &identity.unionid_header,
            &identity.appid_header,
        ];
        if names.iter().collect::<HashSet<_>>().len() != names.len() {
            return Err(self.err("identity", "the three identity headers must differ"));
        }
        for name in names {
            if crate::headers::is_hop_by_hop(name) || is_reserved(name) {
                return Err(self.err(
                    "identity",
                    format!("`{name}` cannot be used as an identity header"),
                ));
            }
        }
        Ok(identity)
    }

    fn store(&self, s: RawStore) -> Result<StoreConfig> {
        match s.backend.as_ref().map_or("memory", |b| b.0.as_str()) {
            "memory" => {}
            other => {
                return Err(self.err(
                    "store.backend",
                    format!("`{other}` is not available in this version; use \"memory\""),
                ))
            }
        }
        let capacity = s.capacity.unwrap_or(defaults::STORE_CAPACITY);
        if capacity == 0 {
            return Err(self.err("store.capacity", "must be at least 1"));
        }
        Ok(StoreConfig { capacity })
    }

    fn routes(
        &self,
        raw: Vec<RawRoute>,
        server: &ServerConfig,
        apps: &[AppConfig],
    ) -> Result<Vec<RouteConfig>> {
        let mut seen = HashSet::new();
        raw.into_iter()
            .map(|r| {
                let route = self.route(r, server, apps)?;
                if !seen.insert((route.host.clone(), route.path.clone())) {
                    return Err(self.err(
                        "routes.path",
                        format!("two routes have path `{}` and the same host", route.path),
                    ));
                }
                Ok(route)
            })
            .collect()
    }

    fn route(&self, r: RawRoute, server: &ServerConfig, apps: &[AppConfig]) -> Result<RouteConfig> {
        let raw_path = r.path.0;
        let path = match path::normalize(&raw_path) {
            // Written normalized, so the file says what is matched.
            Ok(p) if raw_path.starts_with('/') && p == raw_path => {
                let trimmed = p.trim_end_matches('/');
                if trimmed.is_empty() {
                    "/".to_owned()
                } else {
                    trimmed.to_owned()
                }
            }
            _ => {
                return Err(self.err(
                    "routes.path",
                    format!("`{raw_path}` is not an absolute path without `..`, `%2F` or `\\`"),
                ))
            }
        };
        let key = |k: &str| format!("routes[{path}].{k}");
        let mut upstream =
            parse_upstream(&r.upstream.0).map_err(|m| self.err(key("upstream"), m))?;
        if let Some(file) = r.ca_file {
            if upstream.scheme != http::uri::Scheme::HTTPS {
                return Err(self.err(key("ca_file"), "only an https upstream uses a CA file"));
            }
            let ca = CaFile::load(self.base_dir.join(file.0));
            upstream.ca_file = Some(ca.map_err(|m| self.err(key("ca_file"), m))?);
        }
        let auth = match r.auth.as_ref().map(|s| s.0.as_str()) {
            None | Some("required") => AuthMode::Required,
            Some("optional") => AuthMode::Optional,
            Some("none") => AuthMode::None,
            Some(other) => {
                return Err(self.err(
                    key("auth"),
                    format!("`{other}`: expected \"none\", \"optional\" or \"required\""),
                ))
            }
        };
        let methods = match r.methods {
            None => None,
            Some(list) if list.is_empty() => {
                return Err(self.err(key("methods"), "an empty list would refuse everything"))
            }
            Some(list) => Some(
                list.into_iter()
                    .map(|m| {
                        let upper = m.0.to_ascii_uppercase();
                        Method::from_bytes(upper.as_bytes())
                            .ok()
                            .filter(|m| *m != Method::CONNECT)
                            .ok_or_else(|| {
                                self.err(key("methods"), format!("`{}` is not a method", m.0))
                            })
                    })
                    .collect::<Result<Vec<_>>>()?,
            ),
        };
        let allow = methods.as_ref().map(|list| {
            let text = list
                .iter()
                .map(Method::as_str)
                .collect::<Vec<_>>()
                .join(", ");
            HeaderValue::from_str(&text).expect("method names are valid header text")
        });
        let host = match r.host {
            None => None,
            Some(h) => {
                let host = strip_port(&h.0).to_ascii_lowercase();
                if host.is_empty() || host.parse::<http::uri::Authority>().is_err() {
                    return Err(self.err(key("host"), format!("`{}` is not a host name", h.0)));
                }
                Some(host)
            }
        };
        let timeout = match r.timeout {
            Some(t) => parse_duration(&t.0).map_err(|m| self.err(key("timeout"), m))?,
            None => server.request_timeout,
        };
        let route_apps = match r.apps {
            None => None,
            Some(list) => Some(
                list.into_iter()
                    .map(|a| {
                        if apps.iter().any(|app| app.appid == a.0) {
                            Ok(a.0)
                        } else {
                            Err(self.err(
                                key("apps"),
                                format!("`{}` is not an appid from [[apps]]", a.0),
                            ))
                        }
                    })
                    .collect::<Result<Vec<_>>>()?,
            ),
        };
        Ok(RouteConfig {
            path,
            upstream,
            auth,
            methods,
            allow,
            host,
            strip_prefix: r.strip_prefix,
            timeout,
            forward_token: r.forward_token,
            apps: route_apps,
        })
    }

    fn log(&self, l: RawLog) -> Result<LogConfig> {
        let format = match l.format.as_ref().map_or("plain", |s| s.0.as_str()) {
            "plain" => LogFormat::Plain,
            "json" => LogFormat::Json,
            other => {
                return Err(self.err(
                    "log.format",
                    format!("`{other}`: expected \"plain\" or \"json\""),
                ))
            }
        };
        let level = l
            .level
            .map_or_else(|| defaults::LOG_LEVEL.to_owned(), |s| s.0);
        if tracing_subscriber::EnvFilter::builder()
            .parse(&level)
            .is_err()
        {
            return Err(self.err("log.level", format!("`{level}` is not a log filter")));
        }
        Ok(LogConfig {
            level,
            format,
            access: l.access.unwrap_or(true),
        })
    }

    fn dev(
        &self,
        d: RawDev,
        server: &ServerConfig,
        admin: Option<&AdminConfig>,
    ) -> Result<DevConfig> {
        let echo_upstream = d
            .echo_upstream
            .map(|a| self.addr("dev.echo_upstream", &a))
            .transpose()?;
        if d.simulate_wechat || echo_upstream.is_some() {
            let mut addrs = vec![("server.listen", server.listen)];
            addrs.extend(admin.map(|a| ("admin.listen", a.listen)));
            addrs.extend(echo_upstream.map(|a| ("dev.echo_upstream", a)));
            for (key, addr) in addrs {
                if !addr.ip().is_loopback() {
                    return Err(self.err(
                        key,
                        format!("[dev] features only run on loopback addresses, not {addr}"),
                    ));
                }
            }
        }
        Ok(DevConfig {
            simulate_wechat: d.simulate_wechat,
            echo_upstream,
        })
    }
}

/// Headers wxgate sets itself; an identity header of that name would clash.
fn is_reserved(name: &HeaderName) -> bool {
    use http::header::*;
    [HOST, CONTENT_LENGTH, CONTENT_TYPE, AUTHORIZATION, COOKIE].contains(name)
        || name.as_str().starts_with("x-forwarded-")
}

fn parse_net(s: &str) -> std::result::Result<IpNet, String> {
    s.parse::<IpNet>()
        .or_else(|_| s.parse::<IpAddr>().map(IpNet::from))
        .map_err(|_| format!("`{s}` is not an address or CIDR range"))
}

fn parse_rate(s: &str) -> std::result::Result<RateLimit, String> {
    let bad = || format!("`{s}`: expected \"N/s\", \"N/min\", \"N/h\" or \"off\"");
    let (n, unit) = s.split_once('/').ok_or_else(bad)?;
    let requests: u32 = n.trim().parse().map_err(|_| bad())?;
    let per = match unit.trim() {
        "s" | "sec" | "second" => Duration::from_secs(1),
        "min" | "minute" => Duration::from_secs(60),
        "h" | "hour" => Duration::from_secs(3600),
        _ => return Err(bad()),
    };
    if requests == 0 {
        return Err(format!("`{s}`: use \"off\" to disable the limit"));
    }
    Ok(RateLimit { requests, per })
}

fn parse_upstream(s: &str) -> std::result::Result<Upstream, String> {
    let uri: http::Uri = s
        .parse()
        .map_err(|_| format!("`{s}` is not a URL like \"http://127.0.0.1:9000\""))?;
    let scheme = uri
        .scheme()
        .cloned()
        .ok_or_else(|| format!("`{s}` has no scheme"))?;
    if scheme != http::uri::Scheme::HTTP && scheme != http::uri::Scheme::HTTPS {
        return Err(format!("`{s}`: the scheme must be http or https"));
    }
    let authority = uri
        .authority()
        .cloned()
        .ok_or_else(|| format!("`{s}` has no host"))?;
    if authority.as_str().contains('@') {
        return Err(format!("`{s}`: credentials in the URL are not supported"));
    }
    if uri.query().is_some() {
        return Err(format!("`{s}`: an upstream URL cannot carry a query"));
    }
    let base_path = match path::normalize(uri.path()) {
        Ok(p) => p.trim_end_matches('/').to_owned(),
        Err(e) => return Err(format!("`{s}`: {e}")),
    };
    let host_header = HeaderValue::from_str(authority.as_str())
        .map_err(|_| format!("`{s}`: the host is not valid in a header"))?;
    Ok(Upstream {
        scheme,
        authority,
        base_path,
        host_header,
        ca_file: None,
    })
}

/// `host:port` → `host`, keeping IPv6 brackets intact.
pub(crate) fn strip_port(host: &str) -> &str {
    if let Some(end) = host.strip_prefix('[').and_then(|h| h.find(']')) {
        return &host[..end + 2];
    }
    match host.rsplit_once(':') {
        Some((h, port)) if port.bytes().all(|b| b.is_ascii_digit()) => h,
        _ => host,
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

impl fmt::Display for Upstream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}://{}{}", self.scheme, self.authority, self.base_path)
    }
}

#[cfg(test)]
mod tests;

//! The file as written: serde structs mirroring `gateway.toml` one to one.
//! Every table denies unknown keys and every optional key is an `Option`, so
//! the defaults live in one place, the conversion in `config/mod.rs`.

use serde::Deserialize;

use super::interp::{SecretStr, Str};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    pub server: RawServer,
    pub admin: Option<RawAdmin>,
    #[serde(default)]
    pub wechat: RawWeChat,
    #[serde(default)]
    pub apps: Vec<RawApp>,
    #[serde(default)]
    pub auth: RawAuth,
    pub token: RawToken,
    #[serde(default)]
    pub identity: RawIdentity,
    #[serde(default)]
    pub store: RawStore,
    pub internal: Option<RawInternal>,
    #[serde(default)]
    pub routes: Vec<RawRoute>,
    #[serde(default)]
    pub log: RawLog,
    #[serde(default)]
    pub dev: RawDev,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawServer {
    pub listen: Str,
    pub tls_cert: Option<Str>,
    pub tls_key: Option<Str>,
    pub request_timeout: Option<Str>,
    pub header_timeout: Option<Str>,
    pub max_header_bytes: Option<u64>,
    pub trusted_proxies: Option<Vec<Str>>,
    pub shutdown_grace: Option<Str>,
    pub max_connections: Option<u64>,
    pub idle_timeout: Option<Str>,
    pub connect_timeout: Option<Str>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAdmin {
    pub listen: Str,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawWeChat {
    pub api_base: Option<Str>,
    pub timeout: Option<Str>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawApp {
    pub appid: Str,
    pub secret: Option<SecretStr>,
    pub secret_file: Option<Str>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawAuth {
    pub login_path: Option<Str>,
    pub session_path: Option<Str>,
    pub logout_path: Option<Str>,
    pub jwks_path: Option<Str>,
    pub verify_path: Option<Str>,
    pub token_header: Option<Str>,
    pub login_rate_limit: Option<Str>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawToken {
    pub algorithm: Option<Str>,
    pub ttl: Option<Str>,
    pub issuer: Option<Str>,
    pub leeway: Option<Str>,
    #[serde(default)]
    pub keys: Vec<RawKey>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawKey {
    pub id: Str,
    pub algorithm: Option<Str>,
    pub secret: Option<SecretStr>,
    pub secret_file: Option<Str>,
    pub private_key_file: Option<Str>,
    pub public_key_file: Option<Str>,
    #[serde(default)]
    pub verify_only: bool,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawIdentity {
    pub openid_header: Option<Str>,
    pub unionid_header: Option<Str>,
    pub appid_header: Option<Str>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawStore {
    pub backend: Option<Str>,
    pub capacity: Option<u64>,
    pub url: Option<SecretStr>,
    pub password: Option<SecretStr>,
    pub password_file: Option<Str>,
    pub key_prefix: Option<Str>,
    pub timeout: Option<Str>,
    pub on_error: Option<Str>,
    pub encryption_key: Option<SecretStr>,
    pub encryption_key_file: Option<Str>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawInternal {
    pub listen: Option<Str>,
    pub allow: Option<Vec<Str>>,
    pub token: Option<SecretStr>,
    pub token_file: Option<Str>,
    pub max_body: Option<u64>,
    pub decrypt_max_age: Option<Str>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRoute {
    pub path: Str,
    pub upstream: Str,
    pub auth: Option<Str>,
    pub methods: Option<Vec<Str>>,
    pub host: Option<Str>,
    #[serde(default)]
    pub strip_prefix: bool,
    pub timeout: Option<Str>,
    #[serde(default)]
    pub forward_token: bool,
    pub apps: Option<Vec<Str>>,
    pub ca_file: Option<Str>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawLog {
    pub level: Option<Str>,
    pub format: Option<Str>,
    pub access: Option<bool>,
    pub openid: Option<Str>,
    pub openid_key: Option<SecretStr>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawDev {
    #[serde(default)]
    pub simulate_wechat: bool,
    pub echo_upstream: Option<Str>,
}

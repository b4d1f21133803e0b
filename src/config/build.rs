//! The validation pass: raw TOML values -> the typed [`Config`], with
//! errors that name the file, the key and what is wrong. Routes are in
//! [`super::routes`].

use super::*;

#[derive(Clone, Copy)]
pub(super) struct Builder<'a> {
    pub(super) file: &'a str,
    pub(super) base_dir: &'a Path,
    /// Where keys are written, for the line of an error.
    pub(super) lines: &'a super::locate::Locator<'a>,
    /// The entry of `[[apps]]`, `[[token.keys]]` or `[[routes]]` being
    /// built: errors about its keys point at it.
    pub(super) entry: Option<usize>,
}

impl<'a> Builder<'a> {
    /// The builder for entry `index` of an array of tables.
    pub(super) fn at(&self, index: usize) -> Builder<'a> {
        Builder {
            entry: Some(index),
            ..*self
        }
    }

    /// An error about `key`, spelled as in the file's tables (`routes.auth`,
    /// never an index), with its line where the file has it.
    pub(super) fn err(&self, key: impl Into<String>, message: impl Into<String>) -> ConfigError {
        let key = key.into();
        ConfigError {
            file: self.file.to_owned(),
            line: self.lines.line(&key, self.entry),
            key,
            message: message.into(),
        }
    }

    pub(super) fn duration(
        &self,
        key: &str,
        value: Option<Str>,
        default: &str,
    ) -> Result<Duration> {
        let text = value.map(|s| s.0).unwrap_or_else(|| default.to_owned());
        let duration = parse_duration(&text).map_err(|m| self.err(key, m))?;
        // Deadlines are `now + duration`: an absurd one would overflow.
        if duration > MAX_DURATION {
            return Err(self.err(key, format!("`{text}` is longer than 10 years")));
        }
        Ok(duration)
    }

    /// A duration that bounds a wait: more than zero.
    pub(super) fn timeout(&self, key: &str, value: Option<Str>, default: &str) -> Result<Duration> {
        checks::nonzero(self.duration(key, value, default)?).map_err(|m| self.err(key, m))
    }

    pub(super) fn addr(&self, key: &str, value: &Str) -> Result<SocketAddr> {
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
    pub(super) fn secret(
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

    pub(super) fn build(&self, raw: RawConfig, source: &Path) -> Result<Config> {
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
        let internal = raw
            .internal
            .map(|i| self.internal(i, &server, admin.as_ref()))
            .transpose()?;
        let routes = self.routes(raw.routes, &server, &apps)?;
        let log = self.log(raw.log)?;
        let dev = self.dev(raw.dev, &server, admin.as_ref())?;
        let mut listeners = vec![("server.listen", server.listen)];
        listeners.extend(admin.as_ref().map(|a| ("admin.listen", a.listen)));
        listeners.extend(dev.echo_upstream.map(|a| ("dev.echo_upstream", a)));
        if let Some((key, addr, other)) = checks::listener_clash(&listeners) {
            return Err(self.err(
                key,
                format!("`{addr}` is also {other}: two listeners cannot share an address"),
            ));
        }

        if let TokenHeader::Custom(name) = &auth.token_header {
            if crate::http::headers::is_identity_name(name.as_str(), &identity) {
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
            internal,
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
            request_timeout: self.timeout(
                "server.request_timeout",
                s.request_timeout,
                defaults::REQUEST_TIMEOUT,
            )?,
            header_timeout: self.timeout(
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
            idle_timeout: self.timeout(
                "server.idle_timeout",
                s.idle_timeout,
                defaults::IDLE_TIMEOUT,
            )?,
            connect_timeout: self.timeout(
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
            timeout: self.timeout("wechat.timeout", w.timeout, defaults::WECHAT_TIMEOUT)?,
        })
    }

    fn apps(&self, raw: Vec<RawApp>) -> Result<Vec<AppConfig>> {
        if raw.is_empty() {
            return Err(self.err("apps", "at least one [[apps]] entry is required"));
        }
        let mut seen = HashSet::new();
        raw.into_iter()
            .enumerate()
            .map(|(i, a)| {
                let entry = self.at(i);
                let appid = a.appid.0;
                let valid = !appid.is_empty()
                    && appid.len() <= 64
                    && appid
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'_');
                if !valid {
                    return Err(entry.err(
                        "apps.appid",
                        format!("`{appid}` is not an appid (letters, digits and _ only)"),
                    ));
                }
                if !seen.insert(appid.clone()) {
                    return Err(entry.err("apps.appid", format!("`{appid}` appears twice")));
                }
                let secret = entry.secret("apps.secret", a.secret, a.secret_file)?;
                if secret.is_empty() {
                    return Err(
                        entry.err("apps.secret", format!("the secret of app {appid} is empty"))
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

    pub(super) fn algorithm(&self, key: &str, name: &str) -> Result<Algorithm> {
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
            .enumerate()
            .map(|(i, k)| {
                let entry = self.at(i);
                let id = k.id.0.clone();
                if id.is_empty() || id.len() > 64 || !id.bytes().all(|b| b.is_ascii_graphic()) {
                    return Err(entry.err(
                        "token.keys.id",
                        format!("`{id}` must be 1 to 64 printable ASCII characters"),
                    ));
                }
                if !ids.insert(id.clone()) {
                    return Err(entry.err("token.keys.id", format!("`{id}` appears twice")));
                }
                entry.key(k, algorithm)
            })
            .collect::<Result<Vec<_>>>()?;
        if keys.iter().all(|k| k.verify_only) {
            return Err(self.err(
                "token.keys",
                "every key is verify_only: one key must be able to sign",
            ));
        }
        let ttl = self.duration("token.ttl", t.ttl, defaults::TTL)?;
        if let Some(problem) = token_ttl_problem(ttl) {
            return Err(self.err("token.ttl", problem));
        }
        let leeway = self.duration("token.leeway", t.leeway, defaults::LEEWAY)?;
        if leeway > MAX_LEEWAY {
            return Err(self.err(
                "token.leeway",
                "must be at most 10m: an expired token is accepted for that long",
            ));
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
            leeway,
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
            if crate::http::headers::is_hop_by_hop(name) || is_reserved(name) {
                return Err(self.err(
                    "identity",
                    format!("`{name}` cannot be used as an identity header"),
                ));
            }
        }
        Ok(identity)
    }

    fn store(&self, s: RawStore) -> Result<StoreConfig> {
        let capacity = s.capacity.unwrap_or(defaults::STORE_CAPACITY);
        if capacity == 0 {
            return Err(self.err("store.capacity", "must be at least 1"));
        }
        let redis = match s.backend.as_ref().map_or("memory", |b| b.0.as_str()) {
            "memory" => {
                let set = [
                    ("url", s.url.is_some()),
                    (
                        "password",
                        s.password.is_some() || s.password_file.is_some(),
                    ),
                    ("key_prefix", s.key_prefix.is_some()),
                    ("timeout", s.timeout.is_some()),
                    ("on_error", s.on_error.is_some()),
                    (
                        "encryption_key",
                        s.encryption_key.is_some() || s.encryption_key_file.is_some(),
                    ),
                ];
                if let Some((key, _)) = set.iter().find(|(_, set)| *set) {
                    return Err(
                        self.err(format!("store.{key}"), "only used with backend = \"redis\"")
                    );
                }
                None
            }
            "redis" => Some(self.redis_store(s)?),
            other => {
                return Err(self.err(
                    "store.backend",
                    format!("`{other}`: expected \"memory\" or \"redis\""),
                ))
            }
        };
        Ok(StoreConfig { capacity, redis })
    }

    /// Checked without connecting: `wxgate check` runs this too.
    fn redis_store(&self, s: RawStore) -> Result<RedisConfig> {
        let url = s
            .url
            .ok_or_else(|| self.err("store.url", "required with backend = \"redis\""))?
            .0;
        // The URL is a secret (it may carry a password): never echoed.
        let scheme = url.expose().split_once("://").map(|(s, _)| s);
        if !matches!(scheme, Some("redis" | "rediss")) {
            return Err(self.err("store.url", "must start with redis:// or rediss:// (TLS)"));
        }
        if redis::Client::open(url.expose()).is_err() {
            return Err(self.err("store.url", "is not a valid Redis URL"));
        }
        let password = match (s.password, s.password_file) {
            (None, None) => None,
            (password, file) => Some(self.secret("store.password", password, file)?),
        };
        let encryption_key = match (s.encryption_key, s.encryption_key_file) {
            (None, None) => {
                return Err(self.err(
                    "store.encryption_key",
                    "required with backend = \"redis\": base64 of 32 random bytes \
                     (e.g. `openssl rand -base64 32`), or encryption_key_file",
                ))
            }
            (key, file) => self.secret("store.encryption_key", key, file)?,
        };
        if crate::store::crypto::decode_key(&encryption_key).is_none() {
            return Err(self.err(
                "store.encryption_key",
                "must be base64 of exactly 32 bytes (e.g. `openssl rand -base64 32`)",
            ));
        }
        let key_prefix = s
            .key_prefix
            .map_or_else(|| defaults::STORE_KEY_PREFIX.to_owned(), |p| p.0);
        if key_prefix.is_empty() || key_prefix.len() > 64 {
            return Err(self.err("store.key_prefix", "must be 1 to 64 characters"));
        }
        let timeout = self.duration("store.timeout", s.timeout, defaults::STORE_TIMEOUT)?;
        if timeout.is_zero() {
            return Err(self.err("store.timeout", "must be more than 0"));
        }
        let on_error = match s.on_error.as_ref().map_or("open", |o| o.0.as_str()) {
            "open" => OnStoreError::Open,
            "closed" => OnStoreError::Closed,
            other => {
                return Err(self.err(
                    "store.on_error",
                    format!("`{other}`: expected \"open\" or \"closed\""),
                ))
            }
        };
        Ok(RedisConfig {
            url,
            password,
            key_prefix,
            timeout,
            on_error,
            encryption_key,
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
        checks::log_filter(&level).map_err(|m| self.err("log.level", m))?;
        let openid = match (
            l.openid.as_ref().map_or("plain", |s| s.0.as_str()),
            l.openid_key,
        ) {
            ("hashed", key) => {
                let key = key.map(|k| k.0);
                if key.as_ref().is_some_and(|k| k.len() < 16) {
                    return Err(self.err("log.openid_key", "must be at least 16 bytes"));
                }
                OpenidLogging::Hashed { key }
            }
            (_, Some(_)) => {
                return Err(self.err("log.openid_key", "only used with log.openid = \"hashed\""))
            }
            ("plain", None) => OpenidLogging::Plain,
            ("off", None) => OpenidLogging::Off,
            (other, None) => {
                return Err(self.err(
                    "log.openid",
                    format!("`{other}`: expected \"plain\", \"hashed\" or \"off\""),
                ))
            }
        };
        Ok(LogConfig {
            level,
            format,
            access: l.access.unwrap_or(true),
            openid,
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

pub(super) fn parse_net(s: &str) -> std::result::Result<IpNet, String> {
    s.parse::<IpNet>()
        .or_else(|_| s.parse::<IpAddr>().map(IpNet::from))
        .map_err(|_| format!("`{s}` is not an address or CIDR range"))
}

pub(super) fn parse_rate(s: &str) -> std::result::Result<RateLimit, String> {
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

use super::*;
use std::path::Path;

fn fixtures(kind: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/config")
        .join(kind);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no fixtures in {}", dir.display());
    files
}

fn env(pairs: &[(&str, &str)]) -> Option<HashMap<String, String>> {
    Some(
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    )
}

fn load(path: &Path, vars: &[(&str, &str)]) -> std::result::Result<Config, ConfigError> {
    let text = std::fs::read_to_string(path).unwrap();
    Config::parse_with_env(&text, path, env(vars))
}

const ENV: &[(&str, &str)] = &[("JWT_NEW", "new-key-new-key-new-key-new-key-new-key")];

#[test]
fn every_valid_fixture_loads() {
    for path in fixtures("valid") {
        load(&path, ENV).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    }
}

#[test]
fn every_invalid_fixture_fails_with_its_message() {
    // Every fixture is tried; the failures are listed together.
    let problems: Vec<String> = fixtures("invalid")
        .iter()
        .filter_map(|path| invalid_fixture_problem(path).err())
        .collect();
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

fn invalid_fixture_problem(path: &Path) -> std::result::Result<(), String> {
    let name = path.display();
    let text = std::fs::read_to_string(path).unwrap();
    let expect = text
        .lines()
        .next()
        .and_then(|l| l.strip_prefix("# expect: "))
        .ok_or_else(|| format!("{name} has no `# expect:` line"))?;
    let err = load(path, &[])
        .err()
        .ok_or_else(|| format!("{name} loaded"))?;
    let shown = err.to_string();
    let check = |ok: bool, what: &str| match ok {
        true => Ok(()),
        false => Err(format!("{name}: {what}: {shown}")),
    };
    check(shown.contains(expect), "not the expected message")?;
    check(
        shown.starts_with(&name.to_string()),
        "does not name the file",
    )?;
    // One spelling of keys: dotted, as the file's tables write them.
    check(!err.key.contains(['[', ']']), "a key spelled with brackets")?;
    // Where the file writes the key or its table, the line is shown.
    let table = err.key.split('.').next().unwrap_or_default();
    let written = text.lines().any(|l| {
        let l = l.trim_start_matches('[');
        l.starts_with(&format!("{table}]"))
            || l.starts_with(&format!("{table}."))
            || l.starts_with(&format!("{table} "))
    });
    check(
        err.line.is_some() == written,
        "line shown iff the key is written",
    )
}

#[test]
fn the_reference_gateway_toml_loads() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("gateway.toml");
    let config = load(
        &path,
        &[
            ("WX_SECRET", "s"),
            ("WXGATE_JWT_SECRET", "0123456789abcdef0123456789abcdef"),
        ],
    )
    .unwrap();
    assert_eq!(config.routes.len(), 2);
    assert_eq!(config.server.listen.to_string(), "0.0.0.0:8080");
    let err = load(
        &path,
        &[("WXGATE_JWT_SECRET", "0123456789abcdef0123456789abcdef")],
    )
    .unwrap_err();
    assert!(err.to_string().contains("WX_SECRET"), "{err}");
    let dev = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/dev.toml");
    assert!(load(&dev, &[]).unwrap().dev.simulate_wechat);
}

#[test]
fn full_fixture_values() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/config/valid/full.toml");
    let c = load(&path, ENV).unwrap();
    assert_eq!(c.apps[0].secret.expose(), "fallback");
    assert_eq!(c.apps[1].secret.expose(), "from-a-file");
    assert_eq!(c.wechat.api_base, "http://127.0.0.1:1234");
    assert_eq!(
        c.auth.token_header,
        TokenHeader::Custom(HeaderName::from_static("x-token"))
    );
    assert_eq!(c.auth.login_rate_limit, None);
    let KeyMaterial::Secret(secret) = &c.token.keys[0].material else {
        panic!("an HS256 key has a secret")
    };
    assert_eq!(secret.expose(), "new-key-new-key-new-key-new-key-new-key");
    assert!(c.token.keys[1].verify_only);
    let r = &c.routes[0];
    assert_eq!(r.path, "/api/v1");
    assert_eq!(r.upstream.base_path, "/base");
    assert_eq!(r.host.as_deref(), Some("api.example.com"));
    assert_eq!(r.allow.as_ref().unwrap(), "GET, POST");
    assert_eq!(r.timeout, Duration::from_secs(1));
    assert_eq!(r.apps.as_deref(), Some(&["wx2".to_owned()][..]));
    assert_eq!(
        c.routes[1].timeout,
        Duration::from_secs(30),
        "inherits server.request_timeout"
    );
    assert_eq!(c.routes[1].auth, AuthMode::None);
    assert_eq!(c.log.format, LogFormat::Json);
    assert_eq!(
        c.log.openid,
        OpenidLogging::Hashed {
            key: Some(Secret::new("a-log-key-shared-by-replicas"))
        }
    );
    assert!(!c.log.access);
    let i = c.internal.as_ref().unwrap();
    assert_eq!(i.listen.to_string(), "0.0.0.0:9402");
    assert_eq!(i.allow.len(), 2);
    assert!(i.allow[1].contains(&"127.0.0.1".parse::<IpAddr>().unwrap()));
    assert_eq!(
        i.token.as_ref().unwrap().expose(),
        "internal-token-from-a-file-0123"
    );
    assert_eq!((i.max_body, i.decrypt_max_age.as_secs()), (4096, 300));
}

#[test]
fn internal_defaults() {
    let text = "[server]\nlisten = \"127.0.0.1:1\"\n[internal]\n[[apps]]\nappid = \"wx1\"\nsecret = \"s\"\n[token]\n[[token.keys]]\nid = \"k\"\nsecret = \"0123456789abcdef0123456789abcdef\"\n";
    let c = Config::parse_with_env(text, Path::new("t.toml"), env(&[])).unwrap();
    let i = c.internal.unwrap();
    assert_eq!(i.listen.to_string(), "127.0.0.1:9402");
    let allow: Vec<String> = i.allow.iter().map(|n| n.to_string()).collect();
    assert_eq!(allow, ["127.0.0.0/8", "::1/128"]);
    assert!(i.token.is_none());
    assert_eq!(i.max_body, 10_485_760);
    assert_eq!(i.decrypt_max_age.as_secs(), 600);
    let minimal = Config::parse_with_env(
        &text.replace("[internal]\n", ""),
        Path::new("t.toml"),
        env(&[]),
    )
    .unwrap();
    assert!(minimal.internal.is_none());
}

#[test]
fn errors_never_show_a_secret() {
    let secret = "TOP-SECRET-VALUE-0123456789";
    let texts = [
        // Wrong type for a secret.
        "[server]\nlisten = \"127.0.0.1:1\"\n[[apps]]\nappid = \"wx1\"\nsecret = 12345678901234\n[token]\n",
        // A short signing key.
        &format!("[server]\nlisten = \"127.0.0.1:1\"\n[[apps]]\nappid = \"wx1\"\nsecret = \"{secret}\"\n[token]\n[[token.keys]]\nid = \"k\"\nsecret = \"{}\"\n", &secret[..10]),
        // A problem on the secret's own line.
        &format!("[server]\nlisten = \"127.0.0.1:1\"\n[[apps]]\nappid = \"wx1\"\nsecret = \"{secret}\" x\n"),
    ];
    for text in texts {
        let err = Config::parse_with_env(text, Path::new("t.toml"), env(&[]))
            .unwrap_err()
            .to_string();
        assert!(
            !err.contains(secret)
                && !err.contains(&secret[..10])
                && !err.contains("12345678901234"),
            "{err}"
        );
    }
    let ok = Config::parse_with_env(
        &format!("[server]\nlisten = \"127.0.0.1:1\"\n[[apps]]\nappid = \"wx1\"\nsecret = \"{secret}\"\n[token]\n[[token.keys]]\nid = \"k\"\nsecret = \"{secret}{secret}\"\n"),
        Path::new("t.toml"),
        env(&[]),
    )
    .unwrap();
    assert!(
        !format!("{ok:?}").contains(secret),
        "Debug of the config masks secrets"
    );
}

/// Every secret-bearing key on this branch, written every wrong way: the
/// error names file, line and key, and never any part of the value.
#[test]
fn no_error_about_a_secret_key_shows_its_value() {
    // (value as written, a part of it that must not appear)
    let values: &[(&str, &str)] = &[
        ("12345678901234567890123456789012", "12345678901234567890"),
        ("-12345678901234567890123", "12345678901234567890"),
        (
            "1234567890123456789012345678901234567890",
            "12345678901234567890",
        ),
        ("9223372036854775807", "922337203685477"),
        ("0xDEADBEEFCAFE", "DEADBEEFCAFE"),
        ("0o777777777", "777777777"),
        ("3.14159265358979", "14159265358979"),
        ("6.02e23", "6.02"),
        ("inf", "inf"),
        ("nan", "nan"),
        ("true", "true"),
        ("1979-05-27T07:32:00Z", "1979-05-27"),
        ("{ value = \"SEKRET-in-a-table\" }", "SEKRET"),
        ("[\"SEKRET-in-an-array\"]", "SEKRET"),
        ("[[\"SEKRET\"], 1]", "SEKRET"),
        ("\"SEKRET-${not a name}\"", "not a name"),
        ("\"SEKRET-${}\"", "SEKRET"),
        ("\"SEKRET-${UNSET_SEKRET_VAR\"", "SEKRET"),
        ("\"SEKRET-value\" \"more\"", "SEKRET"),
        ("SEKRET-unquoted", "SEKRET"),
        ("\"SEKRET-bad-escape\\q\"", "SEKRET"),
        ("'SEKRET-unterminated", "SEKRET"),
        ("\"SEKRET-unterminated", "SEKRET"),
    ];
    let head = "[server]\nlisten = \"127.0.0.1:1\"\n";
    let key =
        "[token]\n[[token.keys]]\nid = \"k\"\nsecret = \"0123456789abcdef0123456789abcdef\"\n";
    for (value, part) in values {
        let texts = [
            (
                format!("{head}[[apps]]\nappid = \"wx1\"\nsecret = {value}\n{key}"),
                "apps.secret",
            ),
            (
                format!("{head}apps = [{{ appid = \"wx1\", secret = {value} }}]\n{key}"),
                "apps",
            ),
            (
                format!("{head}[[apps]]\nappid = \"wx1\"\nsecret = \"s\"\n[token]\n[[token.keys]]\nid = \"k\"\nsecret = {value}\n"),
                "token.keys.secret",
            ),
            (
                format!("{head}[[apps]]\nappid = \"wx1\"\nsecret = \"s\"\n{key}[log]\nopenid = \"hashed\"\nopenid_key = {value}\n"),
                "log.openid_key",
            ),
            (
                format!("{head}[[apps]]\nappid = \"wx1\"\nsecret = \"s\"\n{key}[internal]\ntoken = {value}\n"),
                "internal.token",
            ),
        ];
        for (text, key) in texts {
            let err = Config::parse_with_env(&text, Path::new("t.toml"), env(&[]))
                .expect_err(&text)
                .to_string();
            assert!(!err.contains(part), "{value}: {err}");
            assert!(err.starts_with("t.toml:"), "{value}: {err}");
            // (An unterminated string ends on a later line, or none.)
            assert!(
                err.contains(key) || value.contains("unterminated"),
                "{value}: names {key}: {err}"
            );
        }
    }
    // A long secret in the wrong place: an ES256 key takes no secret.
    let text = format!("{head}[[apps]]\nappid = \"wx1\"\nsecret = \"s\"\n[token]\n[[token.keys]]\nid = \"k\"\nalgorithm = \"ES256\"\nsecret = \"SEKRET-{}\"\n", "x".repeat(100));
    let err = Config::parse_with_env(&text, Path::new("t.toml"), env(&[])).unwrap_err();
    assert!(!err.to_string().contains("SEKRET"), "{err}");
    assert_eq!(err.key, "token.keys.secret");
}

#[test]
fn errors_name_line_and_key() {
    let text = "[server]\nlisten = \"127.0.0.1:1\"\nheader_timeout = 5\n";
    let err = Config::parse_with_env(text, Path::new("g.toml"), env(&[])).unwrap_err();
    assert_eq!(err.line, Some(3));
    assert_eq!(err.key, "server.header_timeout");
    assert!(
        err.to_string()
            .starts_with("g.toml:3: server.header_timeout: "),
        "{err}"
    );
}

/// A route's host is normalized as a request's is: no case, no trailing dot.
#[test]
fn route_hosts_are_normalized() {
    let text = "[server]\nlisten = \"127.0.0.1:1\"\n[[apps]]\nappid = \"wx1\"\nsecret = \"s\"\n[token]\n[[token.keys]]\nid = \"k\"\nsecret = \"0123456789abcdef0123456789abcdef\"\n[[routes]]\npath = \"/\"\nupstream = \"http://127.0.0.1:9\"\nhost = \"Admin.Example.\"\n";
    let c = Config::parse_with_env(text, Path::new("g.toml"), env(&[])).unwrap();
    assert_eq!(c.routes[0].host.as_deref(), Some("admin.example"));
    for bad in [
        "admin..example",
        "a b",
        "u@admin.example",
        "admin.example:443",
    ] {
        let err = Config::parse_with_env(
            &text.replace("Admin.Example.", bad),
            Path::new("g.toml"),
            env(&[]),
        )
        .unwrap_err();
        assert_eq!(err.key, "routes.host", "{bad}: {err}");
    }
}

/// Errors found after parsing carry the line too: of the value when it is
/// written, else of its entry's header.
#[test]
fn validation_errors_name_the_line() {
    let head = "[server]\nlisten = \"127.0.0.1:1\"\n[[apps]]\nappid = \"wx1\"\nsecret = \"s\"\n[token]\n[[token.keys]]\nid = \"k\"\nsecret = \"0123456789abcdef0123456789abcdef\"\n";
    let route = "[[routes]]\npath = \"/api\"\nupstream = \"http://127.0.0.1:9\"\n";
    let cases = [
        // (text, line, key)
        (format!("{head}{route}{route}"), 14, "routes.path"),
        (
            format!("{head}{route}auth = \"sometimes\"\n"),
            13,
            "routes.auth",
        ),
        (
            format!("{head}[[apps]]\nappid = \"wx2\"\n"),
            10,
            "apps.secret",
        ),
        (
            head.replace("listen = \"127.0.0.1:1\"", "listen = \"nowhere\""),
            2,
            "server.listen",
        ),
        (
            format!(
                "{head}[[token.keys]]\nid = \"k\"\nsecret = \"0123456789abcdef0123456789abcdef\"\n"
            ),
            11,
            "token.keys.id",
        ),
    ];
    for (text, line, key) in cases {
        let err = Config::parse_with_env(&text, Path::new("g.toml"), env(&[])).unwrap_err();
        assert_eq!((err.line, err.key.as_str()), (Some(line), key), "{err}");
        assert!(
            err.to_string()
                .starts_with(&format!("g.toml:{line}: {key}: ")),
            "{err}"
        );
    }
}

#[test]
fn helpers() {
    assert_eq!(
        parse_rate("10/s").unwrap(),
        RateLimit {
            requests: 10,
            per: Duration::from_secs(1)
        }
    );
    assert_eq!(parse_rate("60/min").unwrap().per, Duration::from_secs(60));
    assert!(parse_rate("0/min").is_err());
}

#[test]
fn asymmetric_keys_fixture() {
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/config/valid/asymmetric.toml");
    let c = load(&path, &[]).unwrap();
    let keys: Vec<(&str, Algorithm, bool)> = c
        .token
        .keys
        .iter()
        .map(|k| (k.id.as_str(), k.algorithm, k.verify_only))
        .collect();
    assert_eq!(
        keys,
        [
            ("es-2026", Algorithm::ES256, false),
            ("ed-old", Algorithm::EdDSA, true),
            ("hs-old", Algorithm::HS256, true),
        ]
    );
    assert!(matches!(c.token.keys[0].material, KeyMaterial::Private(_)));
    assert!(matches!(c.token.keys[1].material, KeyMaterial::Public(_)));
    assert_eq!(c.auth.jwks_path, "/keys.json");
    // Debug shows no key material.
    let pem = std::fs::read_to_string(path.parent().unwrap().join("../../keys/es256.pem")).unwrap();
    let shown = format!("{c:?}");
    for line in pem.lines().filter(|l| !l.starts_with("-----")) {
        assert!(!shown.contains(line), "{shown}");
    }
    assert!(shown.contains("PrivateKey(ES256, ***)"), "{shown}");
}

//! `gateway.toml` (the annotated reference) and `docs/configuration.md` (the
//! table of keys) against the code: every commented `# key = value` line in
//! `gateway.toml` is the value the code uses when the key is absent, unless
//! it is listed below as an example; every key the parser knows
//! (`src/config/raw.rs`) has a line in `gateway.toml` (a `secret_file` may
//! ride on its `secret`'s line) and is named in `docs/configuration.md`.
//!
//! A default is checked by loading `gateway.toml` twice, as written and with
//! that one line uncommented (its table's header too when that is commented
//! out, plus the lines `CONTEXT` gives it), and comparing the two `Config`s
//! (their `Debug` text: every field, secrets masked alike). A drifted
//! default changes the config and fails here.

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use wxgate::Config;

/// Commented lines that show an example, not a default (keys that have no
/// default, and the second `[[token.keys]]` entry), as `table.key = value`
/// with the value written as in `gateway.toml`; `[n]` is the n-th entry
/// (from 0) of an array of tables, commented-out entries counted.
const EXAMPLES: &[&str] = &[
    r#"server.tls_cert = "/etc/wxgate/tls.crt""#,
    r#"server.tls_key = "/etc/wxgate/tls.key""#,
    r#"server.trusted_proxies = ["10.0.0.0/8"]"#,
    r#"apps[0].secret_file = "/run/secrets/wx_secret""#,
    r#"token.keys[0].secret_file = "/run/secrets/wxgate/jwt_key""#,
    r#"token.keys[1].id = "k2""#,
    r#"token.keys[1].algorithm = "ES256""#,
    r#"token.keys[1].private_key_file = "/etc/wxgate/k2.pem""#,
    r#"token.keys[1].verify_only = true"#,
    r#"token.keys[1].public_key_file = "/etc/wxgate/k2.pub.pem""#,
    r#"store.url = "redis://127.0.0.1:6379/0""#,
    r#"store.password = "${REDIS_PASSWORD}""#,
    r#"store.encryption_key = "${WXGATE_STORE_KEY}""#,
    r#"internal.token = "${WXGATE_INTERNAL_TOKEN}""#,
    r#"log.openid_key = "${WXGATE_LOG_KEY}""#,
    r#"routes[0].methods = ["GET", "POST"]"#,
    r#"routes[0].host = "api.example.com""#,
    r#"routes[0].timeout = "30s""#,
    r#"routes[0].apps = ["wx0123456789abcdef"]"#,
    r#"routes[0].ca_file = "/etc/wxgate/upstream-ca.pem""#,
    r#"dev.echo_upstream = "127.0.0.1:9000""#,
];

/// Keys fixed by the contract whose code lands from other branches (the
/// Redis store, the internal API, `log.openid`). While this build refuses
/// such a key as unknown, its line cannot be checked and is passed over;
/// once the parser knows it, it is checked like every other.
const PENDING: &[&str] = &[
    "store.key_prefix",
    "store.timeout",
    "store.on_error",
    "internal.listen",
    "internal.allow",
    "internal.max_body",
    "internal.decrypt_max_age",
];

/// Lines a default needs around it to mean anything: the Redis settings are
/// refused with the memory backend, so theirs are checked with a minimal
/// Redis store configured (nothing connects: loading never dials).
const CONTEXT: &[(&str, &[&str])] = &[
    ("store.key_prefix", REDIS),
    ("store.timeout", REDIS),
    ("store.on_error", REDIS),
];
const REDIS: &[&str] = &[
    r#"backend = "redis""#,
    r#"url = "redis://127.0.0.1:6379/0""#,
    r#"encryption_key = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=""#,
];

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read(relative: &str) -> String {
    std::fs::read_to_string(root().join(relative))
        .unwrap_or_else(|e| panic!("cannot read {relative}: {e}"))
}

/// A `key = value` line of `gateway.toml`, commented out or not.
struct KeyLine {
    /// 0-based index in the file.
    index: usize,
    /// The table it belongs to, `[]` marking an array table: `token.keys[]`.
    table: String,
    /// Which entry of an array table (from 0, commented-out ones counted).
    entry: usize,
    /// The table's header: its index and its text without a `#` (a
    /// commented-out table such as `# [dev]` is checked with its header
    /// uncommented).
    header: (usize, String),
    key: String,
    /// The line without its `#`.
    text: String,
    commented: bool,
}

impl KeyLine {
    fn name(&self) -> String {
        format!("{}.{}", self.table, self.key)
    }

    /// `table.key = value` (`table[n].key` in an array table), the trailing
    /// comment and extra spaces removed.
    fn setting(&self) -> String {
        let value: toml::Table = toml::from_str(&self.text).unwrap();
        let value = &value[&self.key];
        let written = self.text.split_once('=').unwrap().1.trim();
        // The value as written (strings keep their `${VAR}`), without the
        // comment: the shortest prefix that parses back to the same value.
        let shown = (1..=written.len())
            .filter(|&end| written.is_char_boundary(end))
            .map(|end| written[..end].trim_end())
            .find(|prefix| {
                toml::from_str::<toml::Table>(&format!("v = {prefix}"))
                    .is_ok_and(|t| &t["v"] == value)
            })
            .unwrap_or(written);
        let table = self.table.replace("[]", &format!("[{}]", self.entry));
        format!("{table}.{} = {shown}", self.key)
    }
}

/// `[name]` or `[[name]]`, with an optional trailing comment: the table's
/// name, `[]` appended for an array table.
fn header(text: &str) -> Option<String> {
    let text = text.split('#').next().unwrap().trim();
    let (inner, array) = match text.strip_prefix("[[") {
        Some(rest) => (rest.strip_suffix("]]")?, true),
        None => (text.strip_prefix('[')?.strip_suffix(']')?, false),
    };
    let valid = !inner.is_empty()
        && inner
            .chars()
            .all(|c| c.is_ascii_lowercase() || c == '_' || c == '.');
    valid.then(|| format!("{inner}{}", if array { "[]" } else { "" }))
}

/// `key = value` that TOML reads as exactly that one key.
fn key_value(text: &str) -> Option<String> {
    let key = text.split_once('=')?.0.trim();
    if key.is_empty() || !key.chars().all(|c| c.is_ascii_lowercase() || c == '_') {
        return None;
    }
    let table: toml::Table = toml::from_str(text).ok()?;
    (table.len() == 1 && table.contains_key(key)).then(|| key.to_owned())
}

fn key_lines(text: &str) -> Vec<KeyLine> {
    let mut table = String::new();
    let mut entry = 0;
    let mut entries: HashMap<String, usize> = HashMap::new();
    let mut header_at = (0, String::new());
    let mut lines = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let trimmed = line.trim();
        let (commented, body) = match trimmed.strip_prefix('#') {
            Some(rest) => (true, rest.trim()),
            None => (false, trimmed),
        };
        if let Some(name) = header(body) {
            let seen = entries.entry(name.clone()).or_default();
            entry = *seen;
            *seen += 1;
            table = name;
            header_at = (index, body.to_owned());
        } else if let Some(key) = key_value(body) {
            lines.push(KeyLine {
                index,
                table: table.clone(),
                entry,
                header: header_at.clone(),
                key,
                text: body.to_owned(),
                commented,
            });
        }
    }
    lines
}

fn env() -> HashMap<String, String> {
    [
        ("WX_SECRET", "wx-secret-for-the-reference-test"),
        ("WXGATE_JWT_SECRET", "0123456789abcdef0123456789abcdef"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect()
}

/// `text` with the lines at `uncomment` (index, replacement) replaced.
fn with_lines(text: &str, uncomment: &[(usize, &str)]) -> String {
    text.lines()
        .enumerate()
        .map(
            |(i, line)| match uncomment.iter().find(|(at, _)| *at == i) {
                Some((_, replacement)) => *replacement,
                None => line,
            },
        )
        .collect::<Vec<_>>()
        .join("\n")
}

fn load(text: &str, path: &Path) -> Result<String, String> {
    Config::parse_with_env(text, path, Some(env()))
        .map(|config| format!("{config:#?}"))
        .map_err(|e| e.to_string())
}

/// The first line where two `Debug` texts differ, to show what changed.
fn first_difference(a: &str, b: &str) -> String {
    a.lines()
        .zip(b.lines())
        .find(|(x, y)| x != y)
        .map(|(x, y)| format!("`{}` became `{}`", x.trim(), y.trim()))
        .unwrap_or_else(|| "the configs differ in length".to_owned())
}

#[test]
fn every_commented_default_in_gateway_toml_is_the_code_default() {
    let path = root().join("gateway.toml");
    let text = read("gateway.toml");
    let lines = key_lines(&text);
    let examples: BTreeSet<String> = lines
        .iter()
        .filter(|l| l.commented)
        .map(KeyLine::setting)
        .filter(|s| EXAMPLES.contains(&s.as_str()))
        .collect();
    let stale: Vec<_> = EXAMPLES
        .iter()
        .filter(|e| !examples.contains(**e))
        .collect();
    assert!(
        stale.is_empty(),
        "EXAMPLES lists lines gateway.toml no longer has: {stale:?}"
    );

    let mut failures = Vec::new();
    let mut checked = 0;
    let mut pending = Vec::new();
    for line in lines.iter().filter(|l| l.commented) {
        let setting = line.setting();
        if EXAMPLES.contains(&setting.as_str()) {
            continue;
        }
        let name = line.name();
        let context = CONTEXT.iter().find(|(key, _)| *key == name);
        let header = std::iter::once(line.header.1.as_str())
            .chain(
                context
                    .into_iter()
                    .flat_map(|(_, lines)| lines.iter().copied()),
            )
            .collect::<Vec<_>>()
            .join("\n");
        let mut edits: Vec<(usize, &str)> = vec![(line.header.0, &header)];
        let base = load(&with_lines(&text, &edits), &path);
        edits.push((line.index, &line.text));
        let with = load(&with_lines(&text, &edits), &path);
        let unknown = |r: &Result<String, String>| {
            r.as_ref()
                .err()
                .is_some_and(|e| e.contains("unknown field"))
        };
        if PENDING.contains(&name.as_str()) && (unknown(&base) || unknown(&with)) {
            pending.push(name);
            continue;
        }
        let at = format!("gateway.toml:{}: `{setting}`", line.index + 1);
        match (base, with) {
            (Ok(base), Ok(with)) if base == with => checked += 1,
            (Ok(base), Ok(with)) => failures.push(format!(
                "{at} is not the default: uncommented, {}",
                first_difference(&base, &with)
            )),
            (Err(e), _) => failures.push(format!("{at}: the config around it does not load: {e}")),
            (_, Err(e)) => failures.push(format!("{at}: uncommented, it does not load: {e}")),
        }
    }
    assert!(
        failures.is_empty(),
        "commented lines of gateway.toml that are not the code's default \
         (fix the line, or list it in EXAMPLES if it is an example):\n{}",
        failures.join("\n")
    );
    // Everything but the pending keys was checked: guards against a parser
    // change that would find no lines at all.
    assert!(checked >= 30, "only {checked} defaults checked");
    eprintln!("{checked} defaults checked; pending in this build: {pending:?}");
}

/// The keys `src/config/raw.rs` accepts, dotted from the root (`[]` marking
/// arrays of tables), read from the structs' source so a new field is seen
/// without touching this test.
fn raw_keys() -> Vec<String> {
    let source = read("src/config/raw.rs");
    let mut structs: HashMap<String, Vec<(String, String)>> = HashMap::new();
    let mut current: Option<String> = None;
    for line in source.lines().map(str::trim) {
        if let Some(rest) = line.strip_prefix("pub struct ") {
            let name = rest.split([' ', '{']).next().unwrap().to_owned();
            structs.insert(name.clone(), Vec::new());
            current = Some(name);
        } else if line == "}" {
            current = None;
        } else if let (Some(name), Some(field)) = (&current, line.strip_prefix("pub ")) {
            assert!(
                !line.contains("rename"),
                "raw.rs renames a field: teach this test"
            );
            let (field, ty) = field.split_once(':').unwrap();
            let ty = ty.trim().trim_end_matches(',').to_owned();
            structs
                .get_mut(name)
                .unwrap()
                .push((field.trim().to_owned(), ty));
        }
    }
    fn walk(
        structs: &HashMap<String, Vec<(String, String)>>,
        name: &str,
        prefix: &str,
        out: &mut Vec<String>,
    ) {
        for (field, ty) in &structs[name] {
            let child = ty
                .split(|c: char| !c.is_alphanumeric() && c != '_')
                .find(|t| t.starts_with("Raw") && structs.contains_key(*t));
            let path = format!("{prefix}{field}");
            match child {
                Some(child) => {
                    let array = if ty.starts_with("Vec<") { "[]" } else { "" };
                    walk(structs, child, &format!("{path}{array}."), out)
                }
                None => out.push(path),
            }
        }
    }
    let mut keys = Vec::new();
    walk(&structs, "RawConfig", "", &mut keys);
    assert!(keys.len() > 50, "read only {} keys from raw.rs", keys.len());
    keys
}

#[test]
fn every_key_the_parser_knows_is_in_gateway_toml_and_the_docs() {
    let written: BTreeSet<String> = key_lines(&read("gateway.toml"))
        .iter()
        .map(KeyLine::name)
        .collect();
    let docs = read("docs/configuration.md");
    let keys = raw_keys();
    // `x_file`, the file variant of a secret `x`, may be named in `x`'s
    // comment instead of having a line of its own.
    let missing_toml: Vec<_> = keys
        .iter()
        .filter(|k| !written.contains(*k))
        .filter(|k| !k.strip_suffix("_file").is_some_and(|x| written.contains(x)))
        .collect();
    let missing_docs: Vec<_> = keys
        .iter()
        .filter(|k| !docs.contains(&format!("`{k}`")))
        .collect();
    assert!(
        missing_toml.is_empty(),
        "keys with no `key = ...` line (commented or not) in gateway.toml: {missing_toml:?}"
    );
    assert!(
        missing_docs.is_empty(),
        "keys not named (as `table.key`) in docs/configuration.md: {missing_docs:?}"
    );
}

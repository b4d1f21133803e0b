//! The value types of the raw config: strings with `${VAR}` / `${VAR:-default}`
//! interpolation, secrets that never echo their value in a parse error, and
//! durations such as `"500ms"` or `"2h"`.

use std::cell::RefCell;
use std::collections::HashMap;
use std::fmt;
use std::time::Duration;

use serde::de::{self, Deserializer, Visitor};
use serde::Deserialize;

use crate::secret::Secret;

thread_local! {
    /// Environment used while parsing on this thread. `None` reads the
    /// process environment; tests set a map so they never touch the real one.
    static ENV: RefCell<Option<HashMap<String, String>>> = const { RefCell::new(None) };
}

/// Runs `f` with `env` standing in for the process environment.
pub(crate) fn with_env<T>(env: Option<HashMap<String, String>>, f: impl FnOnce() -> T) -> T {
    let previous = ENV.with(|cell| cell.replace(env));
    let out = f();
    ENV.with(|cell| *cell.borrow_mut() = previous);
    out
}

fn lookup(name: &str) -> Option<String> {
    ENV.with(|cell| match &*cell.borrow() {
        Some(map) => map.get(name).cloned(),
        None => std::env::var(name).ok(),
    })
}

/// Why a `${…}` could not be expanded.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum InterpError {
    Unterminated,
    /// The text between `${` and `}`: part of the value, so a secret's
    /// error leaves it out.
    BadName(String),
    /// A variable name: the contract wants it named, and it is not a value.
    Unset(String),
}

impl fmt::Display for InterpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            InterpError::Unterminated => f.write_str("unterminated `${` in value"),
            InterpError::BadName(name) => write!(f, "`${{{name}}}` is not a valid variable name"),
            InterpError::Unset(name) => write!(f, "environment variable {name} is not set"),
        }
    }
}

/// Expands `${VAR}` and `${VAR:-default}`. A `$` not followed by `{` is kept.
pub(crate) fn interpolate(input: &str) -> Result<String, InterpError> {
    if !input.contains("${") {
        return Ok(input.to_owned());
    }
    let mut out = String::with_capacity(input.len());
    let mut rest = input;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after.find('}').ok_or(InterpError::Unterminated)?;
        let expr = &after[..end];
        let (name, default) = match expr.split_once(":-") {
            Some((name, default)) => (name, Some(default)),
            None => (expr, None),
        };
        let valid = !name.is_empty()
            && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
            && !name.as_bytes()[0].is_ascii_digit();
        if !valid {
            return Err(InterpError::BadName(name.to_owned()));
        }
        match (lookup(name), default) {
            (Some(value), _) => out.push_str(&value),
            (None, Some(default)) => out.push_str(default),
            (None, None) => return Err(InterpError::Unset(name.to_owned())),
        }
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// A config string, interpolated as it is parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Str(pub String);

impl<'de> Deserialize<'de> for Str {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(d)?;
        interpolate(&raw).map(Str).map_err(de::Error::custom)
    }
}

/// A secret config string. Its parse errors never contain the value, not even
/// when it has the wrong type: every `visit_*` is answered here, because
/// serde's defaults echo what they got (`integer `1234…` as i128`).
pub struct SecretStr(pub Secret);

impl<'de> Deserialize<'de> for SecretStr {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(SecretVisitor)
    }
}

struct SecretVisitor;

/// What every wrong type of secret is told; the value is never shown.
pub(crate) const SECRET_TYPE: &str =
    "a secret must be a quoted string, e.g. \"${WX_SECRET}\" (the value is not shown)";

fn wrong_type<E: de::Error, T>() -> Result<T, E> {
    Err(E::custom(SECRET_TYPE))
}

impl<'de> Visitor<'de> for SecretVisitor {
    type Value = SecretStr;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a string")
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<SecretStr, E> {
        interpolate(v)
            .map(|s| SecretStr(Secret::new(s)))
            .map_err(|e| match e {
                InterpError::BadName(_) => E::custom(
                    "a `${` in the value starts no valid variable name (the value is not shown)",
                ),
                e => E::custom(e),
            })
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<SecretStr, E> {
        wrong_type()
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<SecretStr, E> {
        wrong_type()
    }
    fn visit_i128<E: de::Error>(self, _: i128) -> Result<SecretStr, E> {
        wrong_type()
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<SecretStr, E> {
        wrong_type()
    }
    fn visit_u128<E: de::Error>(self, _: u128) -> Result<SecretStr, E> {
        wrong_type()
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<SecretStr, E> {
        wrong_type()
    }
    fn visit_bytes<E: de::Error>(self, _: &[u8]) -> Result<SecretStr, E> {
        wrong_type()
    }
    fn visit_unit<E: de::Error>(self) -> Result<SecretStr, E> {
        wrong_type()
    }
    fn visit_none<E: de::Error>(self) -> Result<SecretStr, E> {
        wrong_type()
    }
    fn visit_some<D: Deserializer<'de>>(self, _: D) -> Result<SecretStr, D::Error> {
        wrong_type()
    }
    fn visit_newtype_struct<D: Deserializer<'de>>(self, _: D) -> Result<SecretStr, D::Error> {
        wrong_type()
    }
    fn visit_seq<A: de::SeqAccess<'de>>(self, _: A) -> Result<SecretStr, A::Error> {
        wrong_type()
    }
    fn visit_map<A: de::MapAccess<'de>>(self, _: A) -> Result<SecretStr, A::Error> {
        wrong_type()
    }
    fn visit_enum<A: de::EnumAccess<'de>>(self, _: A) -> Result<SecretStr, A::Error> {
        wrong_type()
    }
}

/// Parses `"500ms"`, `"30s"`, `"2h"`, `"1h 30m"`.
pub(crate) fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s.trim()).map_err(|e| {
        format!("`{s}` is not a duration ({e}); write e.g. \"500ms\", \"30s\", \"2h\"")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Option<HashMap<String, String>> {
        Some(
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        )
    }

    #[test]
    fn interpolation() {
        with_env(env(&[("A", "x"), ("EMPTY", "")]), || {
            assert_eq!(interpolate("plain").unwrap(), "plain");
            assert_eq!(interpolate("${A}").unwrap(), "x");
            assert_eq!(interpolate("a-${A}-b-${A}").unwrap(), "a-x-b-x");
            assert_eq!(interpolate("${B:-dflt}").unwrap(), "dflt");
            assert_eq!(interpolate("${A:-dflt}").unwrap(), "x");
            assert_eq!(interpolate("${EMPTY:-dflt}").unwrap(), "");
            assert_eq!(interpolate("cost $5").unwrap(), "cost $5");
            let err = interpolate("${MISSING}").unwrap_err().to_string();
            assert!(err.contains("MISSING"), "{err}");
            assert!(interpolate("${A").is_err());
            assert!(interpolate("${1A}").is_err());
            assert!(interpolate("${}").is_err());
        });
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("2h").unwrap(), Duration::from_secs(7200));
        assert!(parse_duration("soon").is_err());
    }
}

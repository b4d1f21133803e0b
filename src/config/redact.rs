//! Which keys hold secrets, and the rule that keeps their values out of
//! config errors whatever went wrong: a wrong type, a bad `${…}`, a syntax
//! error. [`SecretStr`](super::interp::SecretStr) never echoes a value
//! itself; this is the net under every key named here, `Str` keys such as
//! `store.url` (which may carry `user:password`) included.

use std::borrow::Cow;

/// Every key whose value is a secret or may contain one, written as config
/// errors name keys (`[[token.keys]]` + `secret` is `token.keys.secret`).
pub(crate) const SECRET_KEYS: &[&str] = &[
    "apps.secret",
    "token.keys.secret",
    "store.password",
    "store.encryption_key",
    "store.url",
    "internal.token",
    "log.openid_key",
];

pub(crate) fn is_secret_key(key: &str) -> bool {
    SECRET_KEYS.contains(&key)
}

/// `message` about `key`, whose value is written as `value` in the file: for
/// a secret-bearing key, a message that shows any part of the value (serde
/// quotes what it got in backticks or double quotes) or says "invalid type"
/// / "invalid value" (serde's shapes that echo) becomes one that does not.
pub(crate) fn message_for<'a>(key: &str, message: &'a str, value: &str) -> Cow<'a, str> {
    if !is_secret_key(key) || !shows_value(key, message, value) {
        return Cow::Borrowed(message);
    }
    Cow::Borrowed(
        "not a valid secret: write it as a quoted string, e.g. \"${WX_SECRET}\" (the value is not shown)",
    )
}

/// A quoted piece that is part of the key's own name (`unknown field
/// `encryption_key``, whose span is the key) shows nothing secret.
fn shows_value(key: &str, message: &str, value: &str) -> bool {
    if message.contains("invalid type") || message.contains("invalid value") {
        return true;
    }
    let value = value.trim();
    quoted(message).any(|q| !q.is_empty() && value.contains(q) && !key.contains(q))
}

/// The pieces of `message` between backticks or double quotes.
fn quoted(message: &str) -> impl Iterator<Item = &str> {
    ['`', '"']
        .into_iter()
        .flat_map(move |q| message.split(q).skip(1).step_by(2))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_secret_keys_message_never_shows_its_value() {
        let generic = |key: &str, message: &str, value: &str| {
            message_for(key, message, value).contains("the value is not shown")
        };
        // serde's wrong-type message, on every secret-bearing key.
        for key in SECRET_KEYS {
            assert!(generic(
                key,
                "invalid type: integer `1234567890` as i128, expected a string",
                "1234567890"
            ));
            assert!(generic(
                key,
                "`${my secret}` is not a valid variable name",
                "\"redis://u:${my secret}@h\""
            ));
            assert!(generic(key, "bad \"p4ss\" here", "\"redis://u:p4ss@h\""));
        }
        // Messages that show nothing of the value pass, as do other keys'.
        assert_eq!(
            message_for(
                "store.encryption_key",
                "unknown field `encryption_key`, expected `backend` or `capacity`",
                "encryption_key"
            ),
            "unknown field `encryption_key`, expected `backend` or `capacity`"
        );
        assert_eq!(
            message_for(
                "store.url",
                "environment variable REDIS_URL is not set",
                "\"${REDIS_URL}\""
            ),
            "environment variable REDIS_URL is not set"
        );
        assert_eq!(
            message_for(
                "server.max_header_bytes",
                "invalid type: string \"x\", expected u64",
                "\"x\""
            ),
            "invalid type: string \"x\", expected u64"
        );
    }
}

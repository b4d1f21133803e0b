//! How an openid appears in a log line. Under China's PIPL an openid is
//! personal data, so `log.openid` chooses: `plain`, `hashed` (the first 16
//! hex digits of HMAC-SHA256 under `log.openid_key`, or under a random key
//! made at start-up: lines of one process can be matched, not the person),
//! or `off` (the field is left out). Every line that names a user (login,
//! logout, the access log) takes its openid from here.

use std::fmt;

use ring::hmac;
use tracing::field::{display, DisplayValue};

use crate::config::OpenidLogging;

pub struct OpenidLog {
    mode: Mode,
}

enum Mode {
    Plain,
    Hashed(hmac::Key),
    Off,
}

impl OpenidLog {
    pub fn new(config: &OpenidLogging) -> Result<OpenidLog, String> {
        let mode = match config {
            OpenidLogging::Plain => Mode::Plain,
            OpenidLogging::Off => Mode::Off,
            OpenidLogging::Hashed { key: Some(key) } => {
                Mode::Hashed(hmac::Key::new(hmac::HMAC_SHA256, key.expose().as_bytes()))
            }
            OpenidLogging::Hashed { key: None } => {
                let mut key = [0u8; 32];
                getrandom::fill(&mut key)
                    .map_err(|e| format!("no randomness for log.openid = \"hashed\": {e}"))?;
                Mode::Hashed(hmac::Key::new(hmac::HMAC_SHA256, &key))
            }
        };
        Ok(OpenidLog { mode })
    }

    /// The log field for `openid`; `None` leaves the field out.
    pub fn field<'a>(&self, openid: &'a str) -> Option<DisplayValue<Shown<'a>>> {
        match &self.mode {
            Mode::Plain => Some(display(Shown::Plain(openid))),
            Mode::Off => None,
            Mode::Hashed(key) => {
                let tag = hmac::sign(key, openid.as_bytes());
                let mut short = [0u8; 8];
                short.copy_from_slice(&tag.as_ref()[..8]);
                Some(display(Shown::Hashed(short)))
            }
        }
    }
}

impl fmt::Debug for OpenidLog {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self.mode {
            Mode::Plain => "OpenidLog(plain)",
            Mode::Hashed(_) => "OpenidLog(hashed, ***)",
            Mode::Off => "OpenidLog(off)",
        })
    }
}

/// An openid as a log line shows it.
pub enum Shown<'a> {
    Plain(&'a str),
    /// The first 8 bytes of the HMAC, written as 16 hex digits.
    Hashed([u8; 8]),
}

impl fmt::Display for Shown<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Shown::Plain(openid) => f.write_str(openid),
            Shown::Hashed(bytes) => bytes.iter().try_for_each(|b| write!(f, "{b:02x}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secret::Secret;

    fn shown(log: &OpenidLog, openid: &str) -> Option<String> {
        log.field(openid).map(|v| format!("{v}"))
    }

    #[test]
    fn each_mode() {
        let plain = OpenidLog::new(&OpenidLogging::Plain).unwrap();
        assert_eq!(shown(&plain, "o-alice").as_deref(), Some("o-alice"));
        let off = OpenidLog::new(&OpenidLogging::Off).unwrap();
        assert_eq!(shown(&off, "o-alice"), None);

        let random = OpenidLog::new(&OpenidLogging::Hashed { key: None }).unwrap();
        let a = shown(&random, "o-alice").unwrap();
        assert_eq!(a.len(), 16);
        assert!(a.bytes().all(|b| b.is_ascii_hexdigit()));
        assert_eq!(shown(&random, "o-alice").unwrap(), a, "stable in a process");
        assert_ne!(shown(&random, "o-bob").unwrap(), a);
        let other = OpenidLog::new(&OpenidLogging::Hashed { key: None }).unwrap();
        assert_ne!(shown(&other, "o-alice").unwrap(), a, "a key per process");

        // With a configured key: the same on every replica, and it is HMAC.
        let key = Secret::new("replicas-share-this-log-key-0123");
        let keyed = OpenidLog::new(&OpenidLogging::Hashed { key: Some(key) }).unwrap();
        let again = OpenidLog::new(&OpenidLogging::Hashed {
            key: Some(Secret::new("replicas-share-this-log-key-0123")),
        })
        .unwrap();
        assert_eq!(shown(&keyed, "o-alice"), shown(&again, "o-alice"));
        let tag = hmac::sign(
            &hmac::Key::new(hmac::HMAC_SHA256, b"replicas-share-this-log-key-0123"),
            b"o-alice",
        );
        let hex: String = tag.as_ref()[..8]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(shown(&keyed, "o-alice").unwrap(), hex);
        assert!(!format!("{keyed:?}").contains("replicas"));
    }
}

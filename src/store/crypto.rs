//! What the Redis store writes is unreadable and unforgeable without
//! `store.encryption_key`: values are sealed with AES-256-GCM, and login
//! codes are named by an HMAC, so someone who reads Redis can neither use a
//! stored session_key or token nor confirm a code they guessed.
//!
//! Two keys are derived from the configured one (HMAC-SHA256 over a label),
//! so the sealing key and the code-naming key are never the same bytes.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM, NONCE_LEN};
use ring::hmac;

use crate::secret::Secret;

/// `encryption_key` as configured: base64 of exactly 32 bytes.
pub(crate) fn decode_key(secret: &Secret) -> Option<[u8; 32]> {
    let bytes = STANDARD.decode(secret.expose().trim()).ok()?;
    bytes.try_into().ok()
}

pub(crate) struct Sealer {
    aead: LessSafeKey,
    names: hmac::Key,
}

impl Sealer {
    pub(crate) fn new(key: &[u8; 32]) -> Sealer {
        let root = hmac::Key::new(hmac::HMAC_SHA256, key);
        let derive = |label: &[u8]| hmac::sign(&root, label);
        let seal_key = derive(b"wxgate store seal v1");
        let name_key = derive(b"wxgate store names v1");
        Sealer {
            aead: LessSafeKey::new(
                UnboundKey::new(&AES_256_GCM, seal_key.as_ref()).expect("32 bytes"),
            ),
            names: hmac::Key::new(hmac::HMAC_SHA256, name_key.as_ref()),
        }
    }

    /// `plaintext` sealed to `aad` (the value's owner: the key name, or
    /// appid and openid): `nonce || ciphertext || tag`. A value moved to
    /// another key or user no longer opens.
    pub(crate) fn seal(&self, aad: &[u8], plaintext: &[u8]) -> Vec<u8> {
        let mut nonce = [0u8; NONCE_LEN];
        getrandom::fill(&mut nonce).expect("the OS random source");
        let mut out = Vec::with_capacity(NONCE_LEN + plaintext.len() + 16);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(plaintext);
        let tag = self
            .aead
            .seal_in_place_separate_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(aad),
                &mut out[NONCE_LEN..],
            )
            .expect("AES-GCM seals any length wxgate writes");
        out.extend_from_slice(tag.as_ref());
        out
    }

    /// The plaintext, or `None` if `sealed` was not sealed to `aad` with
    /// this key (tampered, moved, or written under another key).
    pub(crate) fn open(&self, aad: &[u8], sealed: &[u8]) -> Option<Vec<u8>> {
        if sealed.len() < NONCE_LEN + 16 {
            return None;
        }
        let (nonce, rest) = sealed.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).ok()?;
        let mut buf = rest.to_vec();
        let len = self
            .aead
            .open_in_place(nonce, Aad::from(aad), &mut buf)
            .ok()?
            .len();
        buf.truncate(len);
        Some(buf)
    }

    /// A name for (appid, code) that reveals neither, in hex.
    pub(crate) fn code_name(&self, appid: &str, code: &str) -> String {
        let mut ctx = hmac::Context::with_key(&self.names);
        ctx.update(appid.as_bytes());
        ctx.update(&[0]);
        ctx.update(code.as_bytes());
        let tag = ctx.sign();
        let mut hex = String::with_capacity(64);
        for b in tag.as_ref() {
            hex.push(char::from(b"0123456789abcdef"[usize::from(b >> 4)]));
            hex.push(char::from(b"0123456789abcdef"[usize::from(b & 15)]));
        }
        hex
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sealer(byte: u8) -> Sealer {
        Sealer::new(&[byte; 32])
    }

    #[test]
    fn sealed_values_open_only_with_their_key_and_owner() {
        let s = sealer(1);
        let sealed = s.seal(b"wx1\0o1", b"session-key-bytes");
        assert!(!sealed
            .windows(b"session-key-bytes".len())
            .any(|w| w == b"session-key-bytes"));
        assert_eq!(
            s.open(b"wx1\0o1", &sealed).as_deref(),
            Some(&b"session-key-bytes"[..])
        );
        assert_eq!(s.open(b"wx1\0o2", &sealed), None, "moved to another user");
        assert_eq!(sealer(2).open(b"wx1\0o1", &sealed), None, "another key");
        let mut tampered = sealed.clone();
        *tampered.last_mut().unwrap() ^= 1;
        assert_eq!(s.open(b"wx1\0o1", &tampered), None);
        assert_eq!(s.open(b"wx1\0o1", &sealed[..10]), None);
        assert_ne!(s.seal(b"a", b"x"), s.seal(b"a", b"x"), "fresh nonces");
    }

    #[test]
    fn code_names_depend_on_key_app_and_code() {
        let s = sealer(1);
        let name = s.code_name("wx1", "081code");
        assert_eq!(name.len(), 64);
        assert!(!name.contains("081code"));
        assert_eq!(name, s.code_name("wx1", "081code"));
        assert_ne!(name, s.code_name("wx2", "081code"));
        assert_ne!(name, s.code_name("wx1", "081codf"));
        // The separator keeps ("wx1", "2c") and ("wx12", "c") apart.
        assert_ne!(s.code_name("wx1", "2c"), s.code_name("wx12", "c"));
        assert_ne!(name, sealer(2).code_name("wx1", "081code"));
    }

    #[test]
    fn key_decoding() {
        let good = STANDARD.encode([7u8; 32]);
        assert_eq!(decode_key(&Secret::new(good.as_str())), Some([7u8; 32]));
        assert_eq!(decode_key(&Secret::new(STANDARD.encode([7u8; 31]))), None);
        assert_eq!(decode_key(&Secret::new("not base64!")), None);
    }
}

//! The cryptography WeChat asks of a server that holds session_keys: the
//! `encryptedData` of `wx.getWeRunData`, `wx.getShareInfo` and the older
//! phone-number flow (AES-128-CBC, PKCS#7, key and iv in base64), and the
//! signature `/wxa/checksession` wants (HMAC-SHA256 keyed with the
//! session_key's text). The cipher is RustCrypto's `aes` and `cbc`.

#[cfg(test)]
use aes::cipher::BlockEncryptMut;
use aes::cipher::{block_padding::Pkcs7, BlockDecryptMut, KeyIvInit};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;

type Decryptor = cbc::Decryptor<aes::Aes128>;
#[cfg(test)]
type Encryptor = cbc::Encryptor<aes::Aes128>;

/// Why `encryptedData` was refused. Neither variant says anything about
/// the key or the plaintext.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CryptError {
    /// `encryptedData` or `iv` is not base64 of a usable length: the
    /// caller's mistake.
    BadInput(&'static str),
    /// Wrong key (usually a rotated session_key), bad padding or a
    /// plaintext that is not a JSON object.
    Failed,
}

/// Decrypts `data` (base64) with `session_key` and `iv` (base64) into the
/// JSON object it carries.
pub fn decrypt(
    session_key: &str,
    data: &str,
    iv: &str,
) -> Result<serde_json::Map<String, serde_json::Value>, CryptError> {
    let iv: [u8; 16] = decode(iv)
        .and_then(|v| v.try_into().ok())
        .ok_or(CryptError::BadInput("iv must be base64 of 16 bytes"))?;
    let mut buf = decode(data)
        .filter(|d| !d.is_empty() && d.len() % 16 == 0)
        .ok_or(CryptError::BadInput(
            "encryptedData must be base64 of whole 16-byte blocks",
        ))?;
    // A stored key that is not base64 of 16 bytes cannot have made the
    // data: the same answer as a rotated one.
    let key: [u8; 16] = decode(session_key)
        .and_then(|v| v.try_into().ok())
        .ok_or(CryptError::Failed)?;
    let plain = Decryptor::new(&key.into(), &iv.into())
        .decrypt_padded_mut::<Pkcs7>(&mut buf)
        .map_err(|_| CryptError::Failed)?;
    match serde_json::from_slice(plain) {
        Ok(serde_json::Value::Object(object)) => Ok(object),
        _ => Err(CryptError::Failed),
    }
}

/// The inverse of [`decrypt`], for the round-trip tests: base64 of the
/// ciphertext of `plain`.
#[cfg(test)]
fn encrypt(session_key: &str, iv: &str, plain: &[u8]) -> Option<String> {
    let key: [u8; 16] = decode(session_key)?.try_into().ok()?;
    let iv: [u8; 16] = decode(iv)?.try_into().ok()?;
    let mut buf = vec![0u8; plain.len() + 16];
    buf[..plain.len()].copy_from_slice(plain);
    let cipher = Encryptor::new(&key.into(), &iv.into())
        .encrypt_padded_mut::<Pkcs7>(&mut buf, plain.len())
        .ok()?;
    Some(STANDARD.encode(cipher))
}

/// `signature` for `/wxa/checksession`: lowercase hex of HMAC-SHA256 keyed
/// with the session_key's text (not its decoded bytes) over nothing.
pub fn checksession_signature(session_key: &str) -> String {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, session_key.as_bytes());
    let tag = ring::hmac::sign(&key, b"");
    let mut hex = String::with_capacity(64);
    for b in tag.as_ref() {
        hex.push(char::from(HEX[usize::from(b >> 4)]));
        hex.push(char::from(HEX[usize::from(b & 15)]));
    }
    hex
}

const HEX: &[u8; 16] = b"0123456789abcdef";

fn decode(text: &str) -> Option<Vec<u8>> {
    STANDARD.decode(text.trim()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// WeChat's own sample (the demo of its data-decryption docs).
    const KEY: &str = "tiihtNczf5v6AKRyjwEUhQ==";
    const IV: &str = "r7BXXKkLb8qrSNn05n0qiA==";
    const DATA: &str = "CiyLU1Aw2KjvrjMdj8YKliAjtP4gsMZMQmRzooG2xrDcvSnxIMXFufNstNGTyaGS9uT5geRa0W4oTOb1WT7fJlAC+oNPdbB+3hVbJSRgv+4lGOETKUQz6OYStslQ142dNCuabNPGBzlooOmB231qMM85d2/fV6ChevvXvQP8Hkue1poOFtnEtpyxVLW1zAo6/1Xx1COxFvrc2d7UL/lmHInNlxuacJXwu0fjpXfz/YqYzBIBzD6WUfTIF9GRHpOn/Hz7saL8xz+W//FRAUid1OksQaQx4CMs8LOddcQhULW4ucetDf96JcR3g0gfRK4PC7E/r7Z6xNrXd2UIeorGj5Ef7b1pJAYB6Y5anaHqZ9J6nKEBvB4DnNLIVWSgARns/8wR2SiRS7MNACwTyrGvt9ts8p12PKFdlqYTopNHR1Vf7XjfhQlVsAJdNiKdYmYVoKlaRv85IfVunYzO0IKXsyl7JCUjCpoG20f0a04COwfneQAGGwd5oa+T8yO5hzuyDb/XcxxmK01EpqOyuxINew==";

    #[test]
    fn wechat_sample_vector() {
        let user = decrypt(KEY, DATA, IV).unwrap();
        assert_eq!(user["openId"], "oGZUI0egBJY1zhBYw2KhdUfwVJJE");
        assert_eq!(user["nickName"], "Band");
        assert_eq!(user["unionId"], "ocMvos6NjeKLIBqg5Mr9QjxrP1FA");
        assert_eq!(
            user["watermark"],
            serde_json::json!({"timestamp": 1477314187, "appid": "wx4f4bc4dec97d474b"})
        );
        // Encrypting the plaintext again gives the sample's bytes back.
        let plain = serde_json::to_vec(&user).unwrap();
        let again = encrypt(KEY, IV, &plain).unwrap();
        assert_eq!(decrypt(KEY, &again, IV).unwrap(), user);
    }

    #[test]
    fn round_trips_and_refusals() {
        let key = STANDARD.encode([7u8; 16]);
        let iv = STANDARD.encode([9u8; 16]);
        for len in [0usize, 1, 15, 16, 17, 100] {
            let text = format!(r#"{{"x":"{}"}}"#, "a".repeat(len));
            let data = encrypt(&key, &iv, text.as_bytes()).unwrap();
            assert_eq!(decrypt(&key, &data, &iv).unwrap()["x"], "a".repeat(len));
        }
        let data = encrypt(&key, &iv, br#"{"stepInfoList":[]}"#).unwrap();
        let other_key = STANDARD.encode([8u8; 16]);
        assert_eq!(decrypt(&other_key, &data, &iv), Err(CryptError::Failed));
        assert_eq!(decrypt("not base64!", &data, &iv), Err(CryptError::Failed));
        let not_json = encrypt(&key, &iv, b"[1,2]").unwrap();
        assert_eq!(decrypt(&key, &not_json, &iv), Err(CryptError::Failed));
        for (data, iv) in [
            (data.as_str(), "short"),
            (data.as_str(), ""),
            ("@@@", iv.as_str()),
            ("", iv.as_str()),
            ("AAAA", iv.as_str()),
        ] {
            assert!(
                matches!(decrypt(&key, data, iv), Err(CryptError::BadInput(_))),
                "{data} {iv}"
            );
        }
    }

    #[test]
    fn checksession_vector() {
        assert_eq!(
            checksession_signature(KEY),
            "7154f9f8b4b76b92f541cbf0e37d48840fa06e5e42da92a6f80168a1516a4735"
        );
    }
}

//! ES256 and EdDSA: signing, verification with the algorithm fixed by the
//! key, and the confusion attacks that fixing it defeats.

use super::keys::{private_key_from_pem, public_key_from_pem, PrivateKey};
use super::*;
use crate::config::{KeyConfig, KeyMaterial};
use crate::secret::Secret;
use hmac::{Hmac, Mac};
use sha2::Sha256;

const NOW: u64 = 1_800_000_000;
const HS_SECRET: &str = "0123456789abcdef0123456789abcdef";

fn fixture(name: &str) -> String {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/keys")
        .join(name);
    std::fs::read_to_string(path).unwrap()
}

fn private(alg: Algorithm, file: &str) -> Arc<PrivateKey> {
    private_key_from_pem(alg, &fixture(file)).unwrap()
}

fn key(id: &str, alg: Algorithm, material: KeyMaterial, verify_only: bool) -> KeyConfig {
    KeyConfig {
        id: id.into(),
        algorithm: alg,
        material,
        verify_only,
    }
}

fn config(keys: Vec<KeyConfig>) -> TokenConfig {
    TokenConfig {
        algorithm: Algorithm::HS256,
        ttl: Duration::from_secs(7200),
        issuer: "wxgate".into(),
        leeway: Duration::from_secs(30),
        keys,
    }
}

/// ES256 "ec" signs; EdDSA "ed" (private) and "ed-pub" (public file) and
/// HS256 "hs" verify.
fn mixed() -> Keys {
    let keys = vec![
        key(
            "ec",
            Algorithm::ES256,
            KeyMaterial::Private(private(Algorithm::ES256, "es256.pem")),
            false,
        ),
        key(
            "ed",
            Algorithm::EdDSA,
            KeyMaterial::Private(private(Algorithm::EdDSA, "ed25519.pem")),
            true,
        ),
        key(
            "ed-pub",
            Algorithm::EdDSA,
            KeyMaterial::Public(
                public_key_from_pem(Algorithm::EdDSA, &fixture("ed25519.pub.pem")).unwrap(),
            ),
            true,
        ),
        key(
            "hs",
            Algorithm::HS256,
            KeyMaterial::Secret(Secret::new(HS_SECRET)),
            true,
        ),
    ];
    Keys::new(&config(keys), ["wxapp1"].into_iter())
}

fn b64(bytes: impl AsRef<[u8]>) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

fn claims() -> String {
    format!(
        r#"{{"iss":"wxgate","sub":"o-user","aud":"wxapp1","iat":{NOW},"exp":{},"jti":"j1"}}"#,
        NOW + 600
    )
}

fn input(header: &str) -> String {
    format!("{}.{}", b64(header), b64(claims()))
}

/// A token with `header`, signed by the private key in `file`.
fn signed(header: &str, alg: Algorithm, file: &str) -> String {
    let input = input(header);
    let sig = private(alg, file).sign(input.as_bytes()).unwrap();
    format!("{input}.{}", b64(sig))
}

/// A token with `header`, HMAC-SHA256-signed with `secret` bytes.
fn hmac_signed(header: &str, secret: &[u8]) -> String {
    let input = input(header);
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).unwrap();
    mac.update(input.as_bytes());
    format!("{input}.{}", b64(mac.finalize().into_bytes()))
}

fn header_of(token: &str) -> serde_json::Value {
    let h = token.split('.').next().unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(h).unwrap()).unwrap()
}

fn refused(keys: &Keys, token: &str) -> TokenError {
    keys.verify(token, NOW).expect_err("must be refused")
}

#[test]
fn es256_and_eddsa_keys_sign_and_verify() {
    let keys = mixed();
    let (token, _) = keys
        .mint("o-user", "wxapp1", None, Duration::from_secs(60), NOW)
        .unwrap();
    assert_eq!(
        header_of(&token),
        serde_json::json!({"typ": "JWT", "alg": "ES256", "kid": "ec"})
    );
    assert_eq!(keys.verify(&token, NOW).unwrap().openid_str(), "o-user");

    // An EdDSA signer; its tokens verify under the mixed set by private and
    // by public key.
    let ed = Keys::new(
        &config(vec![key(
            "ed",
            Algorithm::EdDSA,
            KeyMaterial::Private(private(Algorithm::EdDSA, "ed25519.pem")),
            false,
        )]),
        ["wxapp1"].into_iter(),
    );
    let (token, _) = ed
        .mint("o-ed", "wxapp1", None, Duration::from_secs(60), NOW)
        .unwrap();
    assert_eq!(header_of(&token)["alg"], "EdDSA");
    assert_eq!(keys.verify(&token, NOW).unwrap().openid_str(), "o-ed");
    let by_public = signed(
        r#"{"alg":"EdDSA","kid":"ed-pub"}"#,
        Algorithm::EdDSA,
        "ed25519.pem",
    );
    assert!(keys.verify(&by_public, NOW).is_ok());
    // Verify-only keys of every kind verify.
    assert!(keys
        .verify(
            &hmac_signed(r#"{"alg":"HS256","kid":"hs"}"#, HS_SECRET.as_bytes()),
            NOW
        )
        .is_ok());
}

#[test]
fn hs256_with_the_public_key_as_secret_is_refused() {
    let keys = mixed();
    let public = private(Algorithm::ES256, "es256.pem").public().clone();
    // Every form in which an attacker could hold the public key.
    for secret in [
        fixture("es256.pub.pem").into_bytes(),
        public.spki_der(),
        public.bytes.clone(),
        b64(&public.bytes[1..33]).into_bytes(),
    ] {
        for kid in ["ec", "ed", "ed-pub"] {
            let token = hmac_signed(&format!(r#"{{"alg":"HS256","kid":"{kid}"}}"#), &secret);
            assert_eq!(
                refused(&keys, &token),
                TokenError::Invalid("algorithm not allowed"),
                "{kid}"
            );
        }
    }
}

#[test]
fn the_key_fixes_the_algorithm_both_ways() {
    let keys = mixed();
    let not_allowed = TokenError::Invalid("algorithm not allowed");
    // none, with and without a signature.
    for kid in ["ec", "ed", "hs"] {
        let none = format!("{}.", input(&format!(r#"{{"alg":"none","kid":"{kid}"}}"#)));
        assert_eq!(refused(&keys, &none), not_allowed);
    }
    // EdDSA-signed token naming the ES256 key, the reverse, and a kid of
    // another key type (ES256 header, HS256 key).
    for (header, alg, file) in [
        (
            r#"{"alg":"EdDSA","kid":"ec"}"#,
            Algorithm::EdDSA,
            "ed25519.pem",
        ),
        (
            r#"{"alg":"ES256","kid":"ed"}"#,
            Algorithm::ES256,
            "es256.pem",
        ),
        (
            r#"{"alg":"ES256","kid":"hs"}"#,
            Algorithm::ES256,
            "es256.pem",
        ),
    ] {
        assert_eq!(
            refused(&keys, &signed(header, alg, file)),
            not_allowed,
            "{header}"
        );
    }
    // Names that look alike are not the same algorithm.
    for alg in ["ES384", "es256", "ED25519", "EdDsa", "ES256K"] {
        let token = signed(
            &format!(r#"{{"alg":"{alg}","kid":"ec"}}"#),
            Algorithm::ES256,
            "es256.pem",
        );
        assert_eq!(refused(&keys, &token), not_allowed, "{alg}");
    }
}

#[test]
fn signatures_from_other_keys_or_in_other_forms_are_refused() {
    let keys = mixed();
    let bad = TokenError::Invalid("bad signature");
    // Another P-256 key claiming to be "ec".
    let other = signed(
        r#"{"alg":"ES256","kid":"ec"}"#,
        Algorithm::ES256,
        "es256-b.pem",
    );
    assert_eq!(refused(&keys, &other), bad);
    // Right key, one bit flipped in the signature.
    let good = signed(
        r#"{"alg":"ES256","kid":"ec"}"#,
        Algorithm::ES256,
        "es256.pem",
    );
    let (input, sig) = good.rsplit_once('.').unwrap();
    let mut sig = URL_SAFE_NO_PAD.decode(sig).unwrap();
    sig[10] ^= 1;
    assert_eq!(refused(&keys, &format!("{input}.{}", b64(&sig))), bad);
    // Truncated and empty signatures.
    assert_eq!(refused(&keys, &format!("{input}.{}", b64(&sig[..32]))), bad);
    assert_eq!(refused(&keys, &format!("{input}.")), bad);
    // An ASN.1 DER ECDSA signature (72 bytes) is not the JWS form.
    let der_sig = [0x30u8; 72];
    assert!(matches!(
        refused(&keys, &format!("{input}.{}", b64(der_sig))),
        TokenError::Invalid(_)
    ));
    // The same signature with another payload.
    let swapped = format!(
        "{}.{}.{}",
        good.split('.').next().unwrap(),
        b64(claims().replace("o-user", "o-evil")),
        good.rsplit_once('.').unwrap().1
    );
    assert_eq!(refused(&keys, &swapped), bad);
    assert!(keys.verify(&good, NOW).is_ok());
}

#[test]
fn asymmetric_tokens_are_remembered_once_verified() {
    let keys = mixed();
    let token = signed(
        r#"{"alg":"ES256","kid":"ec"}"#,
        Algorithm::ES256,
        "es256.pem",
    );
    assert!(keys.verified.get(&token).is_none());
    keys.verify(&token, NOW).unwrap();
    assert!(keys.verified.get(&token).is_some());
    // A remembered token still expires.
    assert_eq!(
        keys.verify(&token, NOW + 600 + 31).unwrap_err(),
        TokenError::Expired
    );
}

#[test]
fn the_jwks_holds_public_keys_only() {
    let keys = mixed();
    let doc: serde_json::Value = serde_json::from_slice(keys.jwks()).unwrap();
    let list = doc["keys"].as_array().unwrap();
    let kids: Vec<&str> = list.iter().map(|k| k["kid"].as_str().unwrap()).collect();
    assert_eq!(kids, ["ec", "ed", "ed-pub"], "no HS256 key");
    let ec = &list[0];
    assert_eq!(
        (
            ec["kty"].as_str(),
            ec["crv"].as_str(),
            ec["alg"].as_str(),
            ec["use"].as_str()
        ),
        (Some("EC"), Some("P-256"), Some("ES256"), Some("sig"))
    );
    let public = private(Algorithm::ES256, "es256.pem").public().clone();
    assert_eq!(ec["x"], b64(&public.bytes[1..33]));
    assert_eq!(ec["y"], b64(&public.bytes[33..]));
    assert_eq!(list[1]["kty"], "OKP");
    assert_eq!(list[1]["crv"], "Ed25519");
    assert_eq!(
        list[1]["x"], list[2]["x"],
        "private and public file: same key"
    );
    for jwk in list {
        let fields: Vec<&str> = jwk
            .as_object()
            .unwrap()
            .keys()
            .map(|k| k.as_str())
            .collect();
        assert!(!fields.contains(&"d") && !fields.contains(&"k"), "{jwk}");
    }
    let text = String::from_utf8(keys.jwks().to_vec()).unwrap();
    assert!(!text.contains(&b64(HS_SECRET)) && !text.contains(HS_SECRET));

    let hs_only = Keys::new(
        &config(vec![key(
            "hs",
            Algorithm::HS256,
            KeyMaterial::Secret(Secret::new(HS_SECRET)),
            false,
        )]),
        ["wxapp1"].into_iter(),
    );
    assert_eq!(&hs_only.jwks()[..], br#"{"keys":[]}"#);
}

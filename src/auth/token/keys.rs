//! Asymmetric signing keys: PEM files in, ring key pairs and raw public keys
//! out, and new key pairs for `wxgate keygen`.
//!
//! Private keys are PKCS#8 (`BEGIN PRIVATE KEY`), public keys SPKI (`BEGIN
//! PUBLIC KEY`), as `openssl genpkey` and `openssl pkey -pubout` write them.
//! The algorithm comes from the config, and a file holding another kind of
//! key is refused with a message that says what it holds; no message ever
//! carries key material.

use std::fmt;
use std::sync::Arc;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use ring::rand::SystemRandom;
use ring::signature::{self, EcdsaKeyPair, Ed25519KeyPair, KeyPair};

/// A key's signing algorithm. Each key has exactly one, and a token is
/// verified with its key's algorithm whatever its header says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    HS256,
    /// ECDSA on P-256 with SHA-256.
    ES256,
    /// Ed25519.
    EdDSA,
}

impl Algorithm {
    /// The name written in the JWS header's `alg` (and in the config).
    pub fn name(self) -> &'static str {
        match self {
            Algorithm::HS256 => "HS256",
            Algorithm::ES256 => "ES256",
            Algorithm::EdDSA => "EdDSA",
        }
    }

    /// Accepts the JOSE names; `keygen` also takes them in lowercase.
    pub fn from_name(name: &str) -> Option<Algorithm> {
        [Algorithm::HS256, Algorithm::ES256, Algorithm::EdDSA]
            .into_iter()
            .find(|a| a.name().eq_ignore_ascii_case(name))
    }
}

/// SPKI DER before the 65-byte uncompressed point of a P-256 key (RFC 5480).
const P256_SPKI_PREFIX: [u8; 26] = [
    0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a,
    0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00,
];
/// SPKI DER before the 32-byte Ed25519 public key (RFC 8410).
const ED25519_SPKI_PREFIX: [u8; 12] = [
    0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
];

/// PKCS#8 v1 (RFC 8410) before the 32-byte Ed25519 seed: what OpenSSL
/// writes and reads. ring generates v2, which OpenSSL 3.0 cannot read.
const ED25519_PKCS8_V1_PREFIX: [u8; 16] = [
    0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20,
];

/// A private key ready to sign. `Debug` shows the algorithm only.
pub struct PrivateKey {
    pair: Pair,
    public: PublicKey,
}

enum Pair {
    EcP256(EcdsaKeyPair),
    Ed25519(Ed25519KeyPair),
}

/// A raw public key: the uncompressed point (`04 || x || y`) for P-256, the
/// 32 bytes for Ed25519. Public, so printable, but `Debug` stays short.
#[derive(Clone, PartialEq, Eq)]
pub struct PublicKey {
    pub algorithm: Algorithm,
    pub bytes: Vec<u8>,
}

impl fmt::Debug for PrivateKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PrivateKey({:?}, ***)", self.public.algorithm)
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({:?})", self.algorithm)
    }
}

impl PrivateKey {
    pub fn public(&self) -> &PublicKey {
        &self.public
    }

    /// The JWS signature of `input` (64 bytes for both algorithms).
    pub fn sign(
        &self,
        rng: &SystemRandom,
        input: &[u8],
    ) -> Result<Vec<u8>, ring::error::Unspecified> {
        match &self.pair {
            Pair::EcP256(pair) => Ok(pair.sign(rng, input)?.as_ref().to_vec()),
            Pair::Ed25519(pair) => Ok(pair.sign(input).as_ref().to_vec()),
        }
    }
}

impl PublicKey {
    /// The ring verification algorithm fixed by this key.
    pub fn ring_algorithm(&self) -> &'static dyn signature::VerificationAlgorithm {
        match self.algorithm {
            Algorithm::ES256 => &signature::ECDSA_P256_SHA256_FIXED,
            Algorithm::EdDSA => &signature::ED25519,
            Algorithm::HS256 => unreachable!("HS256 keys have no public key"),
        }
    }

    /// SPKI DER, for the public key PEM.
    pub fn spki_der(&self) -> Vec<u8> {
        let prefix: &[u8] = match self.algorithm {
            Algorithm::ES256 => &P256_SPKI_PREFIX,
            _ => &ED25519_SPKI_PREFIX,
        };
        [prefix, &self.bytes].concat()
    }

    pub fn to_pem(&self) -> String {
        pem("PUBLIC KEY", &self.spki_der())
    }
}

/// What the algorithm needs, in words, for messages.
fn needs(algorithm: Algorithm) -> &'static str {
    match algorithm {
        Algorithm::ES256 => "ES256 needs a P-256 (prime256v1) key",
        Algorithm::EdDSA => "EdDSA needs an Ed25519 key",
        Algorithm::HS256 => "HS256 needs a secret",
    }
}

/// Parses a PKCS#8 private key PEM for `algorithm`.
pub fn private_key_from_pem(algorithm: Algorithm, text: &str) -> Result<Arc<PrivateKey>, String> {
    let der = match pem_block(text)? {
        ("PRIVATE KEY", der) => der,
        ("EC PRIVATE KEY", _) => {
            return Err("the file holds a SEC1 EC key (BEGIN EC PRIVATE KEY); convert it to PKCS#8 with `openssl pkcs8 -topk8 -nocrypt -in OLD -out NEW`".into())
        }
        ("ENCRYPTED PRIVATE KEY", _) => {
            return Err("the private key is encrypted; wxgate reads unencrypted PKCS#8 (protect the file with its permissions)".into())
        }
        ("PUBLIC KEY", _) => {
            return Err("the file holds a public key; private_key_file needs the private key (BEGIN PRIVATE KEY)".into())
        }
        (label, _) => return Err(format!("expected BEGIN PRIVATE KEY, found BEGIN {label}")),
    };
    let kind = describe(&der);
    let wrong = || format!("the file holds {kind}, but {}", needs(algorithm));
    let pair = match algorithm {
        Algorithm::ES256 => {
            let rng = SystemRandom::new();
            Pair::EcP256(
                EcdsaKeyPair::from_pkcs8(&signature::ECDSA_P256_SHA256_FIXED_SIGNING, &der, &rng)
                    .map_err(|_| wrong())?,
            )
        }
        Algorithm::EdDSA => Pair::Ed25519(
            // OpenSSL writes PKCS#8 v1 (no public key inside); ring derives it.
            Ed25519KeyPair::from_pkcs8_maybe_unchecked(&der).map_err(|_| wrong())?,
        ),
        Algorithm::HS256 => return Err("HS256 keys take `secret`, not a key file".into()),
    };
    let bytes = match &pair {
        Pair::EcP256(p) => p.public_key().as_ref().to_vec(),
        Pair::Ed25519(p) => p.public_key().as_ref().to_vec(),
    };
    Ok(Arc::new(PrivateKey {
        pair,
        public: PublicKey { algorithm, bytes },
    }))
}

/// Parses an SPKI public key PEM for `algorithm`.
pub fn public_key_from_pem(algorithm: Algorithm, text: &str) -> Result<PublicKey, String> {
    let der = match pem_block(text)? {
        ("PUBLIC KEY", der) => der,
        ("PRIVATE KEY" | "EC PRIVATE KEY" | "ENCRYPTED PRIVATE KEY", _) => {
            return Err("the file holds a private key; public_key_file takes the public key (openssl pkey -in KEY -pubout)".into())
        }
        (label, _) => return Err(format!("expected BEGIN PUBLIC KEY, found BEGIN {label}")),
    };
    let (prefix, len): (&[u8], usize) = match algorithm {
        Algorithm::ES256 => (&P256_SPKI_PREFIX, 65),
        Algorithm::EdDSA => (&ED25519_SPKI_PREFIX, 32),
        Algorithm::HS256 => return Err("HS256 keys take `secret`, not a key file".into()),
    };
    match der.strip_prefix(prefix) {
        // An uncompressed point starts with 4; ring checks it is on the curve.
        Some(key) if key.len() == len && (algorithm != Algorithm::ES256 || key[0] == 4) => {
            Ok(PublicKey {
                algorithm,
                bytes: key.to_vec(),
            })
        }
        _ => Err(format!(
            "the file holds {}, but {}",
            describe(&der),
            needs(algorithm)
        )),
    }
}

/// A new private key for `algorithm`, as PKCS#8 PEM, with its public key.
pub fn generate(algorithm: Algorithm) -> Result<(String, PublicKey), String> {
    let rng = SystemRandom::new();
    let failed = |_| "the system random source failed".to_owned();
    let der = match algorithm {
        Algorithm::ES256 => {
            EcdsaKeyPair::generate_pkcs8(&signature::ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
                .map_err(failed)?
                .as_ref()
                .to_vec()
        }
        Algorithm::EdDSA => {
            // ring's v2 document: the same seed at the same offset, then
            // the public key, which v1 leaves out.
            let v2 = Ed25519KeyPair::generate_pkcs8(&rng).map_err(failed)?;
            let seed = v2
                .as_ref()
                .get(16..48)
                .filter(|_| v2.as_ref()[5..16] == ED25519_PKCS8_V1_PREFIX[5..])
                .ok_or("unexpected PKCS#8 layout from ring")?;
            [&ED25519_PKCS8_V1_PREFIX[..], seed].concat()
        }
        Algorithm::HS256 => return Err("keygen makes ES256 or EdDSA keys".into()),
    };
    let pem = pem("PRIVATE KEY", &der);
    let key = private_key_from_pem(algorithm, &pem)?;
    Ok((pem, key.public().clone()))
}

/// The first PEM block in `text`: its label and decoded body.
fn pem_block(text: &str) -> Result<(&str, Vec<u8>), String> {
    let start = text
        .find("-----BEGIN ")
        .ok_or("not a PEM file (no -----BEGIN line)")?;
    let rest = &text[start + "-----BEGIN ".len()..];
    let (label, rest) = rest.split_once("-----").ok_or("malformed PEM BEGIN line")?;
    let end = format!("-----END {label}-----");
    let body = &rest[..rest.find(&end).ok_or("the PEM block has no END line")?];
    let b64: String = body.split_whitespace().collect();
    let der = STANDARD
        .decode(b64)
        .map_err(|_| format!("the {label} PEM block is not valid base64"))?;
    Ok((label, der))
}

/// Base64 at 64 columns between BEGIN and END lines (RFC 7468).
pub fn pem(label: &str, der: &[u8]) -> String {
    let b64 = STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(line).expect("base64 is ASCII"));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

/// What kind of key a DER document holds, from the OIDs in its algorithm
/// identifier, for error messages only (acceptance is ring's, or an exact
/// SPKI prefix).
fn describe(der: &[u8]) -> &'static str {
    const OIDS: [(&[u8], &str); 8] = [
        (
            &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07],
            "a P-256 key",
        ),
        (&[0x2b, 0x81, 0x04, 0x00, 0x22], "a P-384 key"),
        (&[0x2b, 0x81, 0x04, 0x00, 0x23], "a P-521 key"),
        (&[0x2b, 0x81, 0x04, 0x00, 0x0a], "a secp256k1 key"),
        (&[0x06, 0x03, 0x2b, 0x65, 0x70], "an Ed25519 key"),
        (&[0x06, 0x03, 0x2b, 0x65, 0x71], "an Ed448 key"),
        (&[0x06, 0x03, 0x2b, 0x65, 0x6e], "an X25519 key"),
        (
            &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01],
            "an RSA key",
        ),
    ];
    let head = &der[..der.len().min(40)];
    OIDS.iter()
        .find(|(oid, _)| head.windows(oid.len()).any(|w| w == *oid))
        .map_or("a key wxgate does not recognise", |(_, what)| what)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> String {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/keys")
            .join(name);
        std::fs::read_to_string(path).unwrap()
    }

    #[test]
    fn openssl_keys_load_and_their_public_keys_match() {
        for (alg, private, public) in [
            (Algorithm::ES256, "es256.pem", "es256.pub.pem"),
            (Algorithm::EdDSA, "ed25519.pem", "ed25519.pub.pem"),
        ] {
            let key = private_key_from_pem(alg, &fixture(private)).unwrap();
            let pubkey = public_key_from_pem(alg, &fixture(public)).unwrap();
            assert_eq!(key.public(), &pubkey);
            // Our SPKI encoding is OpenSSL's, byte for byte.
            assert_eq!(pubkey.to_pem(), fixture(public));
            let sig = key.sign(&SystemRandom::new(), b"input").unwrap();
            signature::UnparsedPublicKey::new(pubkey.ring_algorithm(), &pubkey.bytes)
                .verify(b"input", &sig)
                .unwrap();
        }
    }

    #[test]
    fn the_wrong_kind_of_key_is_named() {
        let cases = [
            (
                Algorithm::ES256,
                "ed25519.pem",
                "holds an Ed25519 key, but ES256 needs a P-256",
            ),
            (Algorithm::ES256, "p384.pem", "holds a P-384 key"),
            (
                Algorithm::EdDSA,
                "es256.pem",
                "holds a P-256 key, but EdDSA needs an Ed25519",
            ),
            (Algorithm::EdDSA, "ed448.pem", "holds an Ed448 key"),
            (Algorithm::ES256, "sec1-p256.pem", "SEC1"),
            (Algorithm::ES256, "es256.pub.pem", "holds a public key"),
        ];
        for (alg, file, expect) in cases {
            let err = private_key_from_pem(alg, &fixture(file)).unwrap_err();
            assert!(err.contains(expect), "{file}: {err}");
        }
        let err = public_key_from_pem(Algorithm::ES256, &fixture("ed25519.pub.pem")).unwrap_err();
        assert!(err.contains("holds an Ed25519 key"), "{err}");
        let err = public_key_from_pem(Algorithm::EdDSA, &fixture("es256.pub.pem")).unwrap_err();
        assert!(err.contains("holds a P-256 key"), "{err}");
        let err = public_key_from_pem(Algorithm::EdDSA, &fixture("ed25519.pem")).unwrap_err();
        assert!(err.contains("holds a private key"), "{err}");
        assert!(private_key_from_pem(Algorithm::ES256, "garbage").is_err());
    }

    #[test]
    fn errors_and_debug_never_show_material() {
        let text = fixture("es256.pem");
        let body_line = text.lines().nth(1).unwrap();
        let err = private_key_from_pem(Algorithm::EdDSA, &text).unwrap_err();
        assert!(!err.contains(body_line), "{err}");
        let key = private_key_from_pem(Algorithm::ES256, &text).unwrap();
        assert_eq!(format!("{key:?}"), "PrivateKey(ES256, ***)");
    }

    #[test]
    fn generated_keys_round_trip() {
        for alg in [Algorithm::ES256, Algorithm::EdDSA] {
            let (pem, public) = generate(alg).unwrap();
            assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----\n"));
            let again = private_key_from_pem(alg, &pem).unwrap();
            assert_eq!(again.public(), &public);
            assert_eq!(public_key_from_pem(alg, &public.to_pem()).unwrap(), public);
        }
    }
}

//! jsonwebtoken's cryptography on ring, the crate rustls already brings in:
//! the `CryptoProvider` wxgate installs for the process, so that
//! `jsonwebtoken::encode` and `decode` sign and verify with ring (and no
//! second crypto stack is built in). It knows the three algorithms wxgate
//! has keys for, HS256, ES256 and EdDSA, and refuses every other.
//!
//! The key bytes come from [`super::keys`] (the one place PEM is read), in
//! the forms ring takes: the HS256 secret as it is, a private key as its
//! PKCS#8 DER, a public key raw (the uncompressed P-256 point, or the 32
//! bytes of an Ed25519 key).
//!
//! jsonwebtoken asks the factories for a signer or verifier on every token
//! (they are plain `fn`s: nothing parsed at load can be handed to them), so
//! a verification keys HMAC again, and a mint parses the PKCS#8 document
//! again; the module comment of [`super`] has what that costs.

use jsonwebtoken::crypto::{CryptoProvider, JwtSigner, JwtVerifier, KeyUtils};
use jsonwebtoken::errors::{ErrorKind, Result};
use jsonwebtoken::jwk::{EllipticCurve, ThumbprintHash};
use jsonwebtoken::signature;
use jsonwebtoken::{Algorithm, AlgorithmFamily, DecodingKey, EncodingKey};
use ring::rand::SystemRandom;
use ring::signature::{EcdsaKeyPair, Ed25519KeyPair, KeyPair, UnparsedPublicKey};

/// The provider [`install`] puts in place.
static RING: CryptoProvider = CryptoProvider {
    signer_factory: |alg, key| Ok(Box::new(Signer::new(*alg, key)?)),
    verifier_factory: |alg, key| Ok(Box::new(Verifier::new(*alg, key)?)),
    key_utils: KeyUtils {
        rsa_pub_components_from_private_key: |_| Err(ErrorKind::UnsupportedAlgorithm.into()),
        rsa_pub_components_from_public_key: |_| Err(ErrorKind::UnsupportedAlgorithm.into()),
        ec_pub_components_from_private_key: ec_public_from_private,
        ed_pub_components_from_private_key: ed_public_from_private,
        compute_digest: digest,
    },
};

/// Makes ring jsonwebtoken's provider for this process. Idempotent; called
/// before any key is used ([`super::Keys::new`]).
pub(crate) fn install() {
    if let Err(other) = RING.install_default() {
        if !std::ptr::eq(other, &RING) {
            // Another crate in the process chose first. Its arithmetic is
            // as good, and every rule wxgate adds is checked outside the
            // provider, so this is worth a word, not a failure.
            tracing::warn!("another jsonwebtoken crypto provider was installed first; tokens are signed and verified with it");
        }
    }
}

/// The key's family must be the algorithm's: an HS256 "key" is never read
/// as a public key, nor the reverse.
fn check_family(alg: Algorithm, family: AlgorithmFamily) -> Result<()> {
    if alg.family() == family {
        Ok(())
    } else {
        Err(ErrorKind::InvalidKeyFormat.into())
    }
}

/// Signs with one key, for one algorithm.
pub(crate) struct Signer {
    algorithm: Algorithm,
    key: SigningKey,
}

enum SigningKey {
    Hmac(ring::hmac::Key),
    Ecdsa(EcdsaKeyPair, SystemRandom),
    Ed25519(Ed25519KeyPair),
}

impl Signer {
    pub(crate) fn new(algorithm: Algorithm, key: &EncodingKey) -> Result<Signer> {
        check_family(algorithm, key.family())?;
        let bytes = key.as_bytes();
        let key = match algorithm {
            Algorithm::HS256 => {
                SigningKey::Hmac(ring::hmac::Key::new(ring::hmac::HMAC_SHA256, bytes))
            }
            Algorithm::ES256 => {
                let rng = SystemRandom::new();
                let pair = EcdsaKeyPair::from_pkcs8(
                    &ring::signature::ECDSA_P256_SHA256_FIXED_SIGNING,
                    bytes,
                    &rng,
                )
                .map_err(|_| ErrorKind::InvalidEcdsaKey)?;
                SigningKey::Ecdsa(pair, rng)
            }
            // OpenSSL writes PKCS#8 v1, without the public key; ring
            // derives it.
            Algorithm::EdDSA => SigningKey::Ed25519(
                Ed25519KeyPair::from_pkcs8_maybe_unchecked(bytes)
                    .map_err(|_| ErrorKind::InvalidEddsaKey)?,
            ),
            _ => return Err(ErrorKind::UnsupportedAlgorithm.into()),
        };
        Ok(Signer { algorithm, key })
    }
}

impl signature::Signer<Vec<u8>> for Signer {
    fn try_sign(&self, msg: &[u8]) -> std::result::Result<Vec<u8>, signature::Error> {
        Ok(match &self.key {
            SigningKey::Hmac(key) => ring::hmac::sign(key, msg).as_ref().to_vec(),
            // The JWS form (r || s, 64 bytes), with a fresh random nonce:
            // the only way minting can fail.
            SigningKey::Ecdsa(pair, rng) => pair
                .sign(rng, msg)
                .map_err(|_| signature::Error::new())?
                .as_ref()
                .to_vec(),
            SigningKey::Ed25519(pair) => pair.sign(msg).as_ref().to_vec(),
        })
    }
}

impl JwtSigner for Signer {
    fn algorithm(&self) -> Algorithm {
        self.algorithm
    }
}

/// Verifies with one key, for one algorithm.
struct Verifier {
    algorithm: Algorithm,
    key: VerifyingKey,
}

enum VerifyingKey {
    Hmac(ring::hmac::Key),
    Public(UnparsedPublicKey<Vec<u8>>),
}

impl Verifier {
    fn new(algorithm: Algorithm, key: &DecodingKey) -> Result<Verifier> {
        check_family(algorithm, key.family())?;
        let bytes = key.try_get_as_bytes()?;
        let public = |alg: &'static dyn ring::signature::VerificationAlgorithm| {
            VerifyingKey::Public(UnparsedPublicKey::new(alg, bytes.to_vec()))
        };
        let key = match algorithm {
            Algorithm::HS256 => {
                VerifyingKey::Hmac(ring::hmac::Key::new(ring::hmac::HMAC_SHA256, bytes))
            }
            // Fixed-size r || s, as JWS writes it; an ASN.1 signature fails.
            Algorithm::ES256 => public(&ring::signature::ECDSA_P256_SHA256_FIXED),
            Algorithm::EdDSA => public(&ring::signature::ED25519),
            _ => return Err(ErrorKind::UnsupportedAlgorithm.into()),
        };
        Ok(Verifier { algorithm, key })
    }
}

impl signature::Verifier<Vec<u8>> for Verifier {
    fn verify(&self, msg: &[u8], sig: &Vec<u8>) -> std::result::Result<(), signature::Error> {
        match &self.key {
            // Constant-time comparison inside ring.
            VerifyingKey::Hmac(key) => ring::hmac::verify(key, msg, sig),
            // ring checks the point is on the curve, and the signature.
            VerifyingKey::Public(key) => key.verify(msg, sig),
        }
        .map_err(|_| signature::Error::new())
    }
}

impl JwtVerifier for Verifier {
    fn algorithm(&self) -> Algorithm {
        self.algorithm
    }
}

// What jsonwebtoken's JWK helpers ask of a provider. wxgate writes its JWK
// Set itself (`auth::jwks`) and never calls them; they are here so that no
// path into the provider can panic.

fn ec_public_from_private(der: &[u8], alg: Algorithm) -> Result<(EllipticCurve, Vec<u8>, Vec<u8>)> {
    if alg != Algorithm::ES256 {
        return Err(ErrorKind::UnsupportedAlgorithm.into());
    }
    let pair = EcdsaKeyPair::from_pkcs8(
        &ring::signature::ECDSA_P256_SHA256_FIXED_SIGNING,
        der,
        &SystemRandom::new(),
    )
    .map_err(|_| ErrorKind::InvalidEcdsaKey)?;
    // 04 || x || y.
    let point = pair.public_key().as_ref();
    Ok((
        EllipticCurve::P256,
        point[1..33].to_vec(),
        point[33..].to_vec(),
    ))
}

fn ed_public_from_private(der: &[u8], curve: &EllipticCurve) -> Result<Vec<u8>> {
    if *curve != EllipticCurve::Ed25519 {
        return Err(ErrorKind::UnsupportedAlgorithm.into());
    }
    let pair =
        Ed25519KeyPair::from_pkcs8_maybe_unchecked(der).map_err(|_| ErrorKind::InvalidEddsaKey)?;
    Ok(pair.public_key().as_ref().to_vec())
}

fn digest(data: &[u8], hash: ThumbprintHash) -> Result<Vec<u8>> {
    let algorithm = match hash {
        ThumbprintHash::SHA256 => &ring::digest::SHA256,
        ThumbprintHash::SHA384 => &ring::digest::SHA384,
        ThumbprintHash::SHA512 => &ring::digest::SHA512,
        _ => return Err(ErrorKind::UnsupportedAlgorithm.into()),
    };
    Ok(ring::digest::digest(algorithm, data).as_ref().to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine as _;

    #[test]
    fn only_wxgate_algorithms_with_keys_of_their_family() {
        let secret = EncodingKey::from_secret(b"0123456789abcdef0123456789abcdef");
        assert!(Signer::new(Algorithm::HS256, &secret).is_ok());
        for alg in [Algorithm::HS384, Algorithm::HS512, Algorithm::RS256] {
            assert!(Signer::new(alg, &secret).is_err(), "{alg:?}");
        }
        // A secret is never read as a private or public key, nor the reverse.
        assert!(Signer::new(Algorithm::ES256, &secret).is_err());
        let public = DecodingKey::from_secret(&[4; 65]);
        assert!(Verifier::new(Algorithm::ES256, &public).is_err());
        assert!(Verifier::new(Algorithm::HS256, &DecodingKey::from_ec_der(&[4; 65])).is_err());
        assert!(Verifier::new(Algorithm::ES384, &DecodingKey::from_ec_der(&[4; 97])).is_err());
    }

    #[test]
    fn jsonwebtoken_signs_and_verifies_through_it() {
        install();
        let key = b"0123456789abcdef0123456789abcdef";
        let sig =
            jsonwebtoken::crypto::sign(b"input", &EncodingKey::from_secret(key), Algorithm::HS256)
                .unwrap();
        let ring_key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, key);
        let expected = ring::hmac::sign(&ring_key, b"input");
        assert_eq!(sig, URL_SAFE_NO_PAD.encode(expected.as_ref()));
        let decoding = DecodingKey::from_secret(key);
        assert!(jsonwebtoken::crypto::verify(&sig, b"input", &decoding, Algorithm::HS256).unwrap());
        assert!(
            !jsonwebtoken::crypto::verify(&sig, b"other", &decoding, Algorithm::HS256).unwrap()
        );
    }
}

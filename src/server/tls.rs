//! TLS material: the main listener's certificate and key (`server.tls_cert`,
//! `server.tls_key`) and the trust roots for `https://` upstreams (a route's
//! `ca_file`, else the system store). Everything here runs at load or
//! reload, never per request; the crypto provider is always ring.
//!
//! Error messages name files, never their contents: a key file's bytes must
//! not reach a log line, even when the file is garbage.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::{self, PemObject};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::{ClientConfig, RootCertStore, ServerConfig};

/// ALPN names the main listener offers, h2 preferred.
pub const ALPN_H2: &[u8] = b"h2";
pub const ALPN_HTTP1: &[u8] = b"http/1.1";

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The main listener's certificate chain and key, loaded and checked.
#[derive(Clone)]
pub struct ServerTls {
    pub cert: PathBuf,
    pub key: PathBuf,
    /// Built once per load; every new connection takes the one in force,
    /// so a reload reaches new connections and leaves open ones alone.
    pub config: Arc<ServerConfig>,
}

/// Paths only: the key stays out of `Debug`.
impl fmt::Debug for ServerTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerTls")
            .field("cert", &self.cert)
            .field("key", &self.key)
            .finish_non_exhaustive()
    }
}

/// Which of the two files a [`ServerTls::load`] error is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsFile {
    Cert,
    Key,
}

impl ServerTls {
    /// Reads a PEM certificate chain (leaf first) and a PEM private key
    /// (PKCS#8, PKCS#1 RSA or SEC1 EC) and checks that they belong together.
    /// An error says which of the two files is at fault.
    pub fn load(cert: PathBuf, key: PathBuf) -> Result<ServerTls, (TlsFile, String)> {
        let chain = read_certs(&cert).map_err(|e| (TlsFile::Cert, e))?;
        let key_der = read_key(&key).map_err(|e| (TlsFile::Key, e))?;
        let mut config = ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| (TlsFile::Cert, format!("TLS setup: {e}")))?
            .with_no_client_auth()
            .with_single_cert(chain, key_der)
            .map_err(|e| {
                (
                    TlsFile::Key,
                    match e {
                        rustls::Error::InconsistentKeys(_) => format!(
                            "the key in {} does not belong to the certificate in {}",
                            key.display(),
                            cert.display()
                        ),
                        // rustls' own words name the problem, never the key bytes.
                        e => format!("{} / {}: {e}", cert.display(), key.display()),
                    },
                )
            })?;
        config.alpn_protocols = vec![ALPN_H2.to_vec(), ALPN_HTTP1.to_vec()];
        Ok(ServerTls {
            cert,
            key,
            config: Arc::new(config),
        })
    }
}

fn read(path: &Path) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))
}

/// Every certificate in a PEM file; at least one.
fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let bytes = read(path)?;
    let certs = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| {
            format!(
                "{} is not a valid PEM certificate file: {e}",
                path.display()
            )
        })?;
    if certs.is_empty() {
        return Err(format!(
            "{} holds no PEM certificate (-----BEGIN CERTIFICATE-----)",
            path.display()
        ));
    }
    Ok(certs)
}

/// The first private key in a PEM file.
fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, String> {
    let bytes = read(path)?;
    // pem errors can quote the offending line: never pass them on here.
    PrivateKeyDer::from_pem_slice(&bytes).map_err(|e| match e {
        pem::Error::NoItemsFound => format!(
            "{} holds no PEM private key (PKCS#8, RSA or EC)",
            path.display()
        ),
        _ => format!("{} is not a valid PEM private key file", path.display()),
    })
}

/// A route's `ca_file`: the only roots its `https://` upstream is verified
/// against (instead of the system store).
#[derive(Clone)]
pub struct CaFile {
    pub path: PathBuf,
    pub roots: Arc<RootCertStore>,
}

impl fmt::Debug for CaFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CaFile")
            .field("path", &self.path)
            .field("certificates", &self.roots.len())
            .finish()
    }
}

impl CaFile {
    /// Reads every CA certificate in the PEM file at `path`.
    pub fn load(path: PathBuf) -> Result<CaFile, String> {
        let mut roots = RootCertStore::empty();
        for cert in read_certs(&path)? {
            roots
                .add(cert)
                .map_err(|e| format!("{}: unusable CA certificate: {e}", path.display()))?;
        }
        Ok(CaFile {
            path,
            roots: Arc::new(roots),
        })
    }
}

/// The system's trust store (what `update-ca-certificates` and friends
/// maintain). Unreadable entries are logged and skipped; an empty result is
/// an error, since no https upstream could ever be verified.
pub fn system_roots() -> Result<Arc<RootCertStore>, String> {
    let found = rustls_native_certs::load_native_certs();
    for e in &found.errors {
        tracing::warn!(error = %e, "skipping part of the system trust store");
    }
    let mut roots = RootCertStore::empty();
    let (_, ignored) = roots.add_parsable_certificates(found.certs);
    if ignored > 0 {
        tracing::debug!(
            ignored,
            "system trust store: unparsable certificates skipped"
        );
    }
    if roots.is_empty() {
        return Err("no CA certificates in the system trust store: install one \
                    (e.g. the ca-certificates package) or set the route's ca_file"
            .to_owned());
    }
    Ok(Arc::new(roots))
}

/// A client config that verifies upstream certificates against `roots` (the
/// HTTPS connector sets ALPN).
pub fn client_config(roots: Arc<RootCertStore>) -> Result<ClientConfig, String> {
    Ok(ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS setup: {e}"))?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine as _;

    /// A fresh self-signed P-256 certificate and its PKCS#8 key, as PEM.
    fn pair() -> (String, rcgen::KeyPair) {
        let key = rcgen::KeyPair::generate().unwrap();
        let params = rcgen::CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
        (params.self_signed(&key).unwrap().pem(), key)
    }

    /// The SEC1 `ECPrivateKey` inside a PKCS#8 `PrivateKeyInfo`: the content
    /// of its third element, an OCTET STRING.
    fn sec1_of(pkcs8: &[u8]) -> Vec<u8> {
        fn tlv(b: &[u8]) -> (u8, &[u8], &[u8]) {
            let (len, head) = match b[1] {
                n if n < 0x80 => (n as usize, 2),
                n => {
                    let k = (n & 0x7f) as usize;
                    let len = b[2..2 + k].iter().fold(0, |a, &x| (a << 8) | x as usize);
                    (len, 2 + k)
                }
            };
            (b[0], &b[head..head + len], &b[head + len..])
        }
        let (_, seq, _) = tlv(pkcs8);
        let (_, _, rest) = tlv(seq); // version
        let (_, _, rest) = tlv(rest); // algorithm
        let (tag, key, _) = tlv(rest);
        assert_eq!(tag, 0x04, "an OCTET STRING");
        key.to_vec()
    }

    fn pem(label: &str, der: &[u8]) -> String {
        let b64 = base64::engine::general_purpose::STANDARD.encode(der);
        format!("-----BEGIN {label}-----\n{b64}\n-----END {label}-----\n")
    }

    fn load(cert: &str, key: &str) -> Result<ServerTls, (TlsFile, String)> {
        let dir = tempfile::tempdir().unwrap();
        let (c, k) = (dir.path().join("c.pem"), dir.path().join("k.pem"));
        std::fs::write(&c, cert).unwrap();
        std::fs::write(&k, key).unwrap();
        ServerTls::load(c, k)
    }

    #[test]
    fn pkcs8_and_sec1_keys_load_and_alpn_offers_h2_first() {
        let (cert, key) = pair();
        let tls = load(&cert, &key.serialize_pem()).unwrap();
        assert_eq!(
            tls.config.alpn_protocols,
            [b"h2".to_vec(), b"http/1.1".to_vec()]
        );
        let sec1 = pem("EC PRIVATE KEY", &sec1_of(&key.serialize_der()));
        load(&cert, &sec1).unwrap();
        assert!(!format!("{tls:?}").contains("PRIVATE"), "{tls:?}");
    }

    #[test]
    fn key_errors_name_the_key_file_and_never_its_contents() {
        let (cert, key) = pair();
        let (_, other) = pair();
        let (file, msg) = load(&cert, &other.serialize_pem()).unwrap_err();
        assert_eq!(file, TlsFile::Key);
        assert!(msg.contains("does not belong"), "{msg}");

        let (file, msg) = load(&cert, &cert).unwrap_err();
        assert_eq!(file, TlsFile::Key);
        assert!(msg.contains("holds no PEM private key"), "{msg}");

        let body = key.serialize_der();
        let b64 = base64::engine::general_purpose::STANDARD.encode(&body[..body.len() / 2]);
        let garbage = pem("PRIVATE KEY", &[]).replace("\n\n", &format!("\n{b64}!\n"));
        let (file, msg) = load(&cert, &garbage).unwrap_err();
        assert_eq!(file, TlsFile::Key);
        assert!(msg.contains("not a valid PEM private key"), "{msg}");
        assert!(!msg.contains(&b64[..8]) && !msg.contains('!'), "{msg}");

        let (file, msg) = load(&key.serialize_pem(), &key.serialize_pem()).unwrap_err();
        assert_eq!(file, TlsFile::Cert);
        assert!(msg.contains("holds no PEM certificate"), "{msg}");
    }

    #[test]
    fn a_ca_file_needs_at_least_one_certificate() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ca.pem");
        std::fs::write(&path, "").unwrap();
        assert!(CaFile::load(path.clone())
            .unwrap_err()
            .contains("no PEM certificate"));
        std::fs::write(&path, pair().0).unwrap();
        let ca = CaFile::load(path).unwrap();
        assert_eq!(ca.roots.len(), 1);
        assert!(format!("{ca:?}").contains("certificates: 1"));
    }
}

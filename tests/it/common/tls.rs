//! TLS for integration tests: a CA generated in the test (rcgen), server
//! certificates it issues for `127.0.0.1`/`localhost`, PEM files on disk, and
//! a client that speaks a chosen protocol (HTTP/1.1 or HTTP/2, cleartext or
//! TLS with ALPN) through hyper directly, so a test sees exactly what was
//! negotiated.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use http::{Request, Response, Version};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose,
    SerialNumber,
};
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

/// A certificate authority made for one test.
pub struct TestCa {
    issuer: Issuer<'static, KeyPair>,
    pub der: CertificateDer<'static>,
    pub pem: String,
}

/// A certificate the CA issued and its key.
pub struct Leaf {
    pub der: CertificateDer<'static>,
    pub cert_pem: String,
    pub key_pem: String,
}

impl TestCa {
    pub fn new(name: &str) -> TestCa {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let key = KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        TestCa {
            der: cert.der().clone(),
            pem: cert.pem(),
            issuer: Issuer::new(params, key),
        }
    }

    /// A server certificate for `127.0.0.1` and `localhost` with `serial`.
    pub fn issue(&self, serial: u64) -> Leaf {
        self.issue_with(serial, |_| {})
    }

    /// The same, valid until midnight UTC of the day `(year, month, day)`.
    pub fn issue_until(&self, serial: u64, (year, month, day): (i32, u8, u8)) -> Leaf {
        self.issue_with(serial, |params| {
            params.not_after = rcgen::date_time_ymd(year, month, day);
        })
    }

    fn issue_with(&self, serial: u64, edit: impl FnOnce(&mut CertificateParams)) -> Leaf {
        let names = vec!["127.0.0.1".to_owned(), "localhost".to_owned()];
        let mut params = CertificateParams::new(names).unwrap();
        edit(&mut params);
        params
            .distinguished_name
            .push(DnType::CommonName, format!("wxgate test server {serial}"));
        params.serial_number = Some(SerialNumber::from(serial));
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        Leaf {
            der: cert.der().clone(),
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        }
    }

    /// Client TLS trusting only this CA, offering `alpn`.
    pub fn client_config(&self, alpn: &[&[u8]]) -> Arc<rustls::ClientConfig> {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.der.clone()).unwrap();
        let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Arc::new(config)
    }
}

impl Leaf {
    /// Writes `cert.pem` and `key.pem` into `dir`; returns their paths.
    pub fn write(&self, dir: &Path) -> (PathBuf, PathBuf) {
        let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
        std::fs::write(&cert, &self.cert_pem).unwrap();
        std::fs::write(&key, &self.key_pem).unwrap();
        (cert, key)
    }
}

/// `[server]` lines that turn TLS on with these files.
pub fn tls_lines(cert: &Path, key: &Path) -> String {
    format!(
        "tls_cert = \"{}\"\ntls_key = \"{}\"\n",
        cert.display(),
        key.display()
    )
}

/// Completes a TLS handshake with `addr` as `127.0.0.1`.
pub async fn connect(
    addr: SocketAddr,
    config: Arc<rustls::ClientConfig>,
) -> std::io::Result<TlsStream<TcpStream>> {
    let tcp = TcpStream::connect(addr).await?;
    let name = ServerName::try_from("127.0.0.1").unwrap();
    TlsConnector::from(config).connect(name, tcp).await
}

/// The certificate the server presented on `stream`.
pub fn peer_cert(stream: &TlsStream<TcpStream>) -> CertificateDer<'static> {
    stream.get_ref().1.peer_certificates().unwrap()[0].clone()
}

/// How a test client talks to the gateway.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proto {
    /// HTTP/1.1, cleartext.
    H1,
    /// HTTP/2 with prior knowledge, cleartext.
    H2c,
    /// HTTP/1.1 over TLS, ALPN `http/1.1`.
    H1Tls,
    /// HTTP/2 over TLS, ALPN `h2`.
    H2Tls,
}

impl Proto {
    pub const ALL: [Proto; 4] = [Proto::H1, Proto::H2c, Proto::H1Tls, Proto::H2Tls];

    pub fn tls(self) -> bool {
        matches!(self, Proto::H1Tls | Proto::H2Tls)
    }

    pub fn version(self) -> Version {
        match self {
            Proto::H1 | Proto::H1Tls => Version::HTTP_11,
            Proto::H2c | Proto::H2Tls => Version::HTTP_2,
        }
    }

    pub fn scheme(self) -> &'static str {
        if self.tls() {
            "https"
        } else {
            "http"
        }
    }
}

/// A complete answer.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub version: Version,
    pub headers: http::HeaderMap,
    pub body: Bytes,
}

impl Answer {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("body is not JSON ({e}): {:?}", self.body))
    }
}

/// A client for one protocol; each request uses a fresh connection.
pub struct ProtoClient {
    pub proto: Proto,
    pub addr: SocketAddr,
    /// For TLS protocols: the CA that issued the gateway's certificate.
    pub tls: Option<Arc<rustls::ClientConfig>>,
}

impl ProtoClient {
    pub fn new(proto: Proto, addr: SocketAddr, ca: Option<&TestCa>) -> ProtoClient {
        let tls = match proto {
            Proto::H1Tls => Some(ca.expect("a CA for TLS").client_config(&[b"http/1.1"])),
            Proto::H2Tls => Some(ca.expect("a CA for TLS").client_config(&[b"h2"])),
            _ => None,
        };
        ProtoClient { proto, addr, tls }
    }

    /// `method path` with `headers`, an empty body unless `body` is given.
    pub async fn send(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &str,
    ) -> Answer {
        // HTTP/1.1 in origin form with Host; HTTP/2 carries :scheme and
        // :authority, so it needs the absolute URI.
        let mut req = Request::builder()
            .method(method)
            .version(self.proto.version());
        req = match self.proto.version() {
            Version::HTTP_2 => req.uri(format!(
                "{}://127.0.0.1:{}{path}",
                self.proto.scheme(),
                self.addr.port()
            )),
            _ => req
                .uri(path)
                .header("host", format!("127.0.0.1:{}", self.addr.port())),
        };
        for (n, v) in headers {
            req = req.header(*n, *v);
        }
        let req = req.body(Full::new(Bytes::from(body.to_owned()))).unwrap();
        let res = match &self.tls {
            Some(config) => {
                let stream = connect(self.addr, config.clone()).await.unwrap();
                let alpn = stream.get_ref().1.alpn_protocol().map(<[u8]>::to_vec);
                let expected: &[u8] = match self.proto {
                    Proto::H2Tls => b"h2",
                    _ => b"http/1.1",
                };
                assert_eq!(alpn.as_deref(), Some(expected), "negotiated ALPN");
                exchange(self.proto, TokioIo::new(stream), req).await
            }
            None => {
                let stream = TcpStream::connect(self.addr).await.unwrap();
                exchange(self.proto, TokioIo::new(stream), req).await
            }
        };
        let (parts, body) = res.into_parts();
        Answer {
            status: parts.status.as_u16(),
            version: parts.version,
            headers: parts.headers,
            body: body.collect().await.unwrap().to_bytes(),
        }
    }
}

async fn exchange<I>(
    proto: Proto,
    io: I,
    req: Request<Full<Bytes>>,
) -> Response<hyper::body::Incoming>
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    match proto.version() {
        Version::HTTP_2 => {
            let (mut send, conn) = hyper::client::conn::http2::handshake(TokioExecutor::new(), io)
                .await
                .unwrap();
            tokio::spawn(conn);
            send.send_request(req).await.unwrap()
        }
        _ => {
            let (mut send, conn) = hyper::client::conn::http1::handshake(io).await.unwrap();
            tokio::spawn(conn);
            send.send_request(req).await.unwrap()
        }
    }
}

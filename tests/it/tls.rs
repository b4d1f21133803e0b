//! HTTPS on the main listener (ALPN, certificate reloads, the handshake
//! timeout, clients that do not speak TLS) and `https://` upstreams (a
//! route's `ca_file`, untrusted certificates). Every CA is made in the test.

use std::io::Read;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::common::login_flow::set;
use crate::common::tls::{connect, peer_cert, tls_lines, Leaf, TestCa};
use crate::common::upstream::Upstream;
use crate::common::*;
use wxgate::Config;

/// A gateway started from a real file in `dir` (so that reloads re-read it)
/// serving HTTPS with `leaf`.
async fn https_gateway(dir: &Path, leaf: &Leaf, extra_server: &str) -> TestGateway {
    let (cert, key) = leaf.write(dir);
    let server = format!("{}{extra_server}", tls_lines(&cert, &key));
    let text = set(&base_config(&nowhere(), &nowhere()), "[server]", &server);
    let path = dir.join("gateway.toml");
    std::fs::write(&path, text).unwrap();
    TestGateway::start_config(Config::load(&path).unwrap()).await
}

/// One HTTP/1.1 request on an open connection; the status.
async fn get(send: &mut hyper::client::conn::http1::SendRequest<Empty<Bytes>>) -> u16 {
    let req = http::Request::get("/auth/session")
        .header("host", "localhost")
        .body(Empty::new())
        .unwrap();
    let res = send.send_request(req).await.unwrap();
    let status = res.status().as_u16();
    res.into_body().collect().await.unwrap();
    status
}

/// A TLS connection with ALPN `http/1.1`, ready for requests, and the
/// certificate the gateway presented on it.
async fn h1_over_tls(
    addr: SocketAddr,
    ca: &TestCa,
) -> (
    hyper::client::conn::http1::SendRequest<Empty<Bytes>>,
    rustls::pki_types::CertificateDer<'static>,
) {
    let stream = connect(addr, ca.client_config(&[b"http/1.1"]))
        .await
        .unwrap();
    let cert = peer_cert(&stream);
    let (send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    (send, cert)
}

/// Reads until the peer closes; `None` if it has not within 10 s.
async fn until_closed(stream: &mut TcpStream) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Err(_) => return None,
            Ok(Ok(0)) | Ok(Err(_)) => return Some(out),
            Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
        }
    }
}

#[tokio::test]
async fn alpn_picks_the_protocol_and_no_alpn_still_works() {
    let ca = TestCa::new("wxgate test CA");
    let dir = tempfile::tempdir().unwrap();
    let gw = https_gateway(dir.path(), &ca.issue(1), "").await;

    for (offer, expected) in [
        (vec![&b"h2"[..], &b"http/1.1"[..]], Some(&b"h2"[..])),
        (vec![&b"http/1.1"[..]], Some(&b"http/1.1"[..])),
        (vec![], None),
    ] {
        let stream = connect(gw.addr, ca.client_config(&offer)).await.unwrap();
        assert_eq!(stream.get_ref().1.alpn_protocol(), expected, "{offer:?}");
        let io = TokioIo::new(stream);
        let req = |uri: &str| {
            http::Request::get(uri)
                .header("host", "localhost")
                .body(Empty::<Bytes>::new())
                .unwrap()
        };
        let res = if expected == Some(b"h2") {
            let (mut send, conn) = hyper::client::conn::http2::handshake(TokioExecutor::new(), io)
                .await
                .unwrap();
            tokio::spawn(conn);
            send.send_request(req("https://localhost/nowhere"))
                .await
                .unwrap()
        } else {
            let (mut send, conn) = hyper::client::conn::http1::handshake(io).await.unwrap();
            tokio::spawn(conn);
            send.send_request(req("/nowhere")).await.unwrap()
        };
        let version = match expected {
            Some(b"h2") => http::Version::HTTP_2,
            _ => http::Version::HTTP_11,
        };
        assert_eq!(res.version(), version, "{offer:?}");
        assert_eq!(res.status(), 404, "{offer:?}");
    }
}

#[tokio::test]
async fn h2_preface_on_an_http1_alpn_connection_is_not_served_as_h2() {
    let ca = TestCa::new("wxgate test CA");
    let dir = tempfile::tempdir().unwrap();
    let gw = https_gateway(dir.path(), &ca.issue(1), "").await;
    let stream = connect(gw.addr, ca.client_config(&[b"http/1.1"]))
        .await
        .unwrap();
    // ALPN said http/1.1: an HTTP/2 client on it must fail, not be served.
    let result =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream)).await;
    let served = match result {
        Err(_) => false,
        Ok((mut send, conn)) => {
            tokio::spawn(conn);
            let req = http::Request::get("https://localhost/nowhere")
                .body(Empty::<Bytes>::new())
                .unwrap();
            send.send_request(req).await.is_ok()
        }
    };
    assert!(!served, "HTTP/2 was served on an http/1.1 ALPN connection");
}

#[tokio::test]
async fn a_reload_serves_the_new_certificate_to_new_connections_only() {
    let ca = TestCa::new("wxgate test CA");
    let dir = tempfile::tempdir().unwrap();
    let first = ca.issue(1);
    let gw = https_gateway(dir.path(), &first, "").await;

    let (mut old, cert) = h1_over_tls(gw.addr, &ca).await;
    assert_eq!(cert, first.der);
    assert_eq!(get(&mut old).await, 401);

    // Same files, new contents.
    let second = ca.issue(2);
    second.write(dir.path());
    wxgate::ops::reload::from_file(&gw.gw).unwrap();
    let (mut new, cert) = h1_over_tls(gw.addr, &ca).await;
    assert_eq!(
        cert, second.der,
        "a new connection gets the new certificate"
    );
    assert_eq!(get(&mut new).await, 401);
    assert_eq!(get(&mut old).await, 401, "the old connection still works");

    // New paths.
    let third = ca.issue(3);
    let sub = dir.path().join("next");
    std::fs::create_dir(&sub).unwrap();
    let (cert_path, key_path) = third.write(&sub);
    let config = dir.path().join("gateway.toml");
    let text = std::fs::read_to_string(&config).unwrap();
    let text = text
        .edit(
            &dir.path().join("cert.pem").display().to_string(),
            &cert_path.display().to_string(),
        )
        .edit(
            &dir.path().join("key.pem").display().to_string(),
            &key_path.display().to_string(),
        );
    std::fs::write(&config, text).unwrap();
    wxgate::ops::reload::from_file(&gw.gw).unwrap();
    let (_, cert) = h1_over_tls(gw.addr, &ca).await;
    assert_eq!(cert, third.der);
}

#[tokio::test]
async fn a_broken_certificate_reload_is_an_error_and_keeps_the_old_one() {
    let ca = TestCa::new("wxgate test CA");
    let dir = tempfile::tempdir().unwrap();
    let first = ca.issue(1);
    let gw = https_gateway(dir.path(), &first, "").await;
    let (cert_path, key_path) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));

    // Garbage certificate.
    std::fs::write(
        &cert_path,
        "-----BEGIN CERTIFICATE-----\n!!\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    let err = wxgate::ops::reload::from_file(&gw.gw).unwrap_err();
    assert!(err.contains("server.tls_cert"), "{err}");
    assert!(err.contains("cert.pem"), "{err}");
    let (_, cert) = h1_over_tls(gw.addr, &ca).await;
    assert_eq!(cert, first.der, "the old certificate stays in force");

    // A certificate with somebody else's key.
    let other = ca.issue(2);
    std::fs::write(&cert_path, &other.cert_pem).unwrap();
    std::fs::write(&key_path, &first.key_pem).unwrap();
    let err = wxgate::ops::reload::from_file(&gw.gw).unwrap_err();
    assert!(err.contains("server.tls_key"), "{err}");
    assert!(err.contains("does not belong"), "{err}");

    // A broken key: the error names the file, never its contents.
    std::fs::write(&cert_path, &first.cert_pem).unwrap();
    let marker = "c2VjcmV0LWtleS1ieXRlcy1kby1ub3QtbGVhaw";
    std::fs::write(
        &key_path,
        format!("-----BEGIN PRIVATE KEY-----\n{marker}!\n-----END PRIVATE KEY-----\n"),
    )
    .unwrap();
    let err = wxgate::ops::reload::from_file(&gw.gw).unwrap_err();
    assert!(err.contains("key.pem"), "{err}");
    assert!(!err.contains(marker) && !err.contains("c2Vj"), "{err}");
    let (mut conn, cert) = h1_over_tls(gw.addr, &ca).await;
    assert_eq!(cert, first.der);
    assert_eq!(get(&mut conn).await, 401);
}

#[tokio::test]
async fn a_silent_client_is_cut_at_the_handshake_timeout_and_held_a_connection_slot() {
    let ca = TestCa::new("wxgate test CA");
    let dir = tempfile::tempdir().unwrap();
    let extra = "header_timeout = \"300ms\"\nmax_connections = 1\n";
    let gw = https_gateway(dir.path(), &ca.issue(1), extra).await;

    let silent = TcpStream::connect(gw.addr).await.unwrap();
    // With one slot, the TLS client waits until the silent one is cut.
    let (mut conn, _) = tokio::time::timeout(Duration::from_secs(10), h1_over_tls(gw.addr, &ca))
        .await
        .expect("the silent client was never cut");
    let mut silent = silent.into_std().unwrap();
    silent.set_nonblocking(true).unwrap();
    let mut buf = [0u8; 64];
    assert_eq!(
        silent.read(&mut buf).unwrap(),
        0,
        "closed before the next client was accepted"
    );
    assert_eq!(get(&mut conn).await, 401);
}

#[tokio::test]
async fn plain_http_on_the_tls_port_is_cut_without_a_hang() {
    let ca = TestCa::new("wxgate test CA");
    let dir = tempfile::tempdir().unwrap();
    let gw = https_gateway(dir.path(), &ca.issue(1), "").await;

    let mut stream = TcpStream::connect(gw.addr).await.unwrap();
    stream
        .write_all(&http_request("GET", "/api/x", &[]))
        .await
        .unwrap();
    let answer = until_closed(&mut stream).await.expect("the gateway closed");
    assert!(!answer.starts_with(b"HTTP/"), "{answer:?}");

    let (mut conn, _) = h1_over_tls(gw.addr, &ca).await;
    assert_eq!(get(&mut conn).await, 401, "the listener still serves");
}

/// A gateway (cleartext) with routes to `up`: `/secure` trusting `ca_file`
/// and `/system` trusting the system store.
async fn gateway_to(up: &Upstream, ca_file: &Path) -> TestGateway {
    let extra = format!(
        "[[routes]]\npath = \"/secure\"\nupstream = \"{url}\"\nauth = \"none\"\nca_file = \"{ca}\"\n\
         [[routes]]\npath = \"/system\"\nupstream = \"{url}\"\nauth = \"none\"\n",
        url = up.url(),
        ca = ca_file.display()
    );
    let toml = format!("{}\n{extra}", base_config(&nowhere(), &nowhere()));
    TestGateway::start(&toml).await
}

#[tokio::test]
async fn https_upstream_is_verified_with_the_route_ca_file() {
    let ca = TestCa::new("upstream CA");
    let leaf = ca.issue(7);
    let up = Upstream::start_tls(&leaf.cert_pem, &leaf.key_pem).await;
    let dir = tempfile::tempdir().unwrap();
    let ca_file = dir.path().join("upstream-ca.pem");
    std::fs::write(&ca_file, &ca.pem).unwrap();
    let gw = gateway_to(&up, &ca_file).await;

    let res = raw_request(gw.addr, "GET", "/secure/x?q=1", &[]).await;
    assert_eq!(res.status, 200, "{res:?}");
    assert_eq!(res.header("x-upstream"), Some("1"));
    let got = up.next_request().await;
    assert_eq!(got.target, "/secure/x?q=1");
    assert_eq!(got.header("host"), Some(up.addr().to_string().as_str()));
    assert_eq!(got.header("x-forwarded-proto"), Some("http"));

    // The system store does not know the test CA.
    let res = raw_request(gw.addr, "GET", "/system/x", &[]).await;
    assert_error(&res, 502, "upstream_unavailable");
}

#[tokio::test]
async fn an_untrusted_upstream_certificate_is_502_and_nothing_is_sent() {
    let ca = TestCa::new("upstream CA");
    let leaf = ca.issue(7);
    let up = Upstream::start_tls(&leaf.cert_pem, &leaf.key_pem).await;
    let other = TestCa::new("some other CA");
    let dir = tempfile::tempdir().unwrap();
    let ca_file = dir.path().join("other-ca.pem");
    std::fs::write(&ca_file, &other.pem).unwrap();
    let gw = gateway_to(&up, &ca_file).await;

    let res = raw_request(gw.addr, "GET", "/secure/x", &[]).await;
    assert_error(&res, 502, "upstream_unavailable");
    assert!(up.requests().is_empty(), "{:#?}", up.requests());
}

#[tokio::test]
async fn an_https_upstream_that_offers_h2_is_spoken_to_in_h2() {
    let ca = TestCa::new("upstream CA");
    let leaf = ca.issue(8);
    let up = Upstream::start_tls_alpn(&leaf.cert_pem, &leaf.key_pem, &[b"h2", b"http/1.1"]).await;
    let dir = tempfile::tempdir().unwrap();
    let ca_file = dir.path().join("upstream-ca.pem");
    std::fs::write(&ca_file, &ca.pem).unwrap();
    let gw = gateway_to(&up, &ca_file).await;

    for _ in 0..2 {
        let res = raw_request(gw.addr, "GET", "/secure/x", &[("x-wx-openid", "spoof")]).await;
        assert_eq!(res.status, 200, "{res:?}");
        let got = up.next_request().await;
        assert_eq!(got.version, http::Version::HTTP_2);
        assert_eq!(got.header("x-wx-openid"), None);
        assert_eq!(got.header("x-forwarded-proto"), Some("http"));
    }
    assert_eq!(up.connections(), 1, "one multiplexed connection, reused");
}

//! hyper-util's pooled clients: one for `http://` upstreams (the requests
//! their connection pool does not take) and one for `https://` upstreams
//! per set of trust roots (the system store, or each distinct `ca_file`),
//! all with the same pool settings. They live in the
//! [`Snapshot`](crate::state::Snapshot), so a reload re-reads CA files and
//! the system store.
//!
//! SNI and certificate verification use the upstream URL's host (an IP
//! address is checked against the certificate's IP SANs, without SNI); ALPN
//! offers h2 and http/1.1, and the pool speaks whichever the upstream picks.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client as HyperClient;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use rustls::RootCertStore;

use crate::config::{Config, Upstream};
use crate::http::body::Body;
use crate::server::tls;

/// Idle pooled connections are closed after this long.
const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(90);

/// One type for both schemes, so a route holds its client without boxing:
/// the plain client's connector speaks `http://` only, the others
/// `https://` only.
pub type Client = HyperClient<HttpsConnector<HttpConnector>, Body>;

pub struct Clients {
    http: Client,
    /// By `ca_file` path (`None`: the system store). A handful at most, so a
    /// scan beats hashing a path.
    https: Vec<(Option<Arc<Path>>, Client)>,
}

impl Clients {
    /// The plain client, and one for every distinct trust source the
    /// routes use (none when no route forwards to `https://`).
    pub fn new(config: &Config) -> Result<Clients, String> {
        let mut clients = Clients {
            http: plain(config),
            https: Vec::new(),
        };
        for route in &config.routes {
            let upstream = &route.upstream;
            if upstream.scheme != http::uri::Scheme::HTTPS || clients.https_for(upstream).is_some()
            {
                continue;
            }
            let (key, roots) = match &upstream.ca_file {
                Some(ca) => (Some(Arc::from(ca.path.as_path())), ca.roots.clone()),
                None => (None, tls::system_roots()?),
            };
            clients.https.push((key, tls_client(config, roots)?));
        }
        Ok(clients)
    }

    /// The client for `upstream`.
    pub fn get(&self, upstream: &Upstream) -> &Client {
        self.https_for(upstream).unwrap_or(&self.http)
    }

    fn https_for(&self, upstream: &Upstream) -> Option<&Client> {
        if upstream.scheme != http::uri::Scheme::HTTPS {
            return None;
        }
        let ca = upstream.ca_file.as_ref().map(|ca| ca.path.as_path());
        self.https
            .iter()
            .find(|(key, _)| key.as_deref() == ca)
            .map(|(_, client)| client)
    }
}

/// TCP connections to upstreams.
fn tcp(config: &Config) -> HttpConnector {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    connector.set_connect_timeout(Some(super::connect_timeout(config)));
    connector.enforce_http(false);
    connector
}

fn build(connector: HttpsConnector<HttpConnector>) -> Client {
    HyperClient::builder(TokioExecutor::new())
        .pool_idle_timeout(POOL_IDLE_TIMEOUT)
        .pool_timer(TokioTimer::new())
        .set_host(false)
        .build(connector)
}

fn plain(config: &Config) -> Client {
    // No TLS is ever made through it: an empty trust store refuses all.
    let tls = tls::client_config(Arc::new(RootCertStore::empty()))
        .expect("a client config without roots");
    build(
        HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .wrap_connector(tcp(config)),
    )
}

fn tls_client(config: &Config, roots: Arc<RootCertStore>) -> Result<Client, String> {
    Ok(build(
        HttpsConnectorBuilder::new()
            .with_tls_config(tls::client_config(roots)?)
            .https_only()
            .enable_http1()
            .enable_http2()
            .wrap_connector(tcp(config)),
    ))
}

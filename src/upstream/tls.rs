//! The pooled clients for `https://` upstreams: one per set of trust roots
//! (the system store, or each distinct `ca_file`), all sharing the plain
//! client's pool settings. They live in the [`Snapshot`](crate::state::Snapshot),
//! so a reload re-reads CA files and the system store. `http://` routes never
//! touch them.
//!
//! SNI and certificate verification use the upstream URL's host (an IP
//! address is checked against the certificate's IP SANs, without SNI); ALPN
//! offers h2 and http/1.1, and the pool speaks whichever the upstream picks.

use std::path::Path;
use std::sync::Arc;

use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use rustls::RootCertStore;

use crate::config::{Config, Upstream};
use crate::http::body::Body;
use crate::server::tls;

pub type HttpsClient = Client<HttpsConnector<HttpConnector>, Body>;

#[derive(Default)]
pub struct HttpsClients {
    /// By `ca_file` path (`None`: the system store). A handful at most, so a
    /// scan beats hashing a path.
    clients: Vec<(Option<Arc<Path>>, HttpsClient)>,
}

impl HttpsClients {
    /// One client for every distinct trust source the routes use; empty when
    /// no route forwards to `https://`.
    pub fn new(config: &Config) -> Result<HttpsClients, String> {
        let mut clients = HttpsClients::default();
        for route in &config.routes {
            let upstream = &route.upstream;
            if upstream.scheme != http::uri::Scheme::HTTPS || clients.get(upstream).is_some() {
                continue;
            }
            let (key, roots) = match &upstream.ca_file {
                Some(ca) => (Some(Arc::from(ca.path.as_path())), ca.roots.clone()),
                None => (None, tls::system_roots()?),
            };
            clients.clients.push((key, client(config, roots)?));
        }
        Ok(clients)
    }

    /// The client for `upstream`, if it is `https://`.
    pub fn get(&self, upstream: &Upstream) -> Option<&HttpsClient> {
        if upstream.scheme != http::uri::Scheme::HTTPS {
            return None;
        }
        let ca = upstream.ca_file.as_ref().map(|ca| ca.path.as_path());
        self.clients
            .iter()
            .find(|(key, _)| key.as_deref() == ca)
            .map(|(_, client)| client)
    }
}

fn client(config: &Config, roots: Arc<RootCertStore>) -> Result<HttpsClient, String> {
    let mut tcp = super::connector(config);
    tcp.enforce_http(false);
    let connector = HttpsConnectorBuilder::new()
        .with_tls_config(tls::client_config(roots)?)
        .https_only()
        .enable_http1()
        .enable_http2()
        .wrap_connector(tcp);
    Ok(super::client_builder().build(connector))
}

//! Reaching the upstreams: the connection pools of `http://` upstreams and
//! their wire codec, hyper-util's clients for `https://` ones, and the
//! WebSocket tunnel.

pub mod pool;
pub mod tls;
pub mod tunnel;

use std::time::Duration;

use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};

use crate::config::Config;

/// Idle pooled `https://` connections are closed after this long.
const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(90);

/// The bound on making a TCP connection to an upstream.
pub(crate) fn connect_timeout(config: &Config) -> Duration {
    config
        .server
        .connect_timeout
        .min(config.server.request_timeout)
}

/// TCP connections to `https://` upstreams.
pub(crate) fn connector(config: &Config) -> HttpConnector {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    connector.set_connect_timeout(Some(connect_timeout(config)));
    connector
}

/// The settings of hyper-util's pooled clients.
pub(crate) fn client_builder() -> hyper_util::client::legacy::Builder {
    let mut builder = Client::builder(TokioExecutor::new());
    builder
        .pool_idle_timeout(POOL_IDLE_TIMEOUT)
        .pool_timer(TokioTimer::new())
        .set_host(false);
    builder
}

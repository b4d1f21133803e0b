//! wxgate: a reverse-proxy authentication gateway for WeChat mini-programs.
//!
//! The path of one request through the modules:
//!
//! - [`server`] accepts the connection and hands each request to
//!   [`gateway::Gateway::handle`], which takes the [`gateway::Runtime`] (the
//!   config in force) for the whole request;
//! - [`path`] normalizes the path and [`router`] picks wxgate's own endpoint
//!   or the route with the longest matching prefix;
//! - [`login`] serves the login, session and logout endpoints, exchanging
//!   codes through [`wechat`] and remembering sessions in [`store`];
//!   [`jwks`] publishes the public signing keys;
//! - [`auth`] takes the token from the request and [`token`] verifies it;
//!   [`forward_auth`] answers the same check for an ingress that proxies
//!   by itself (`auth.verify_path`);
//! - [`proxy`] rewrites the request with [`headers`] (strip what the client
//!   may not say, inject the verified identity) and streams it to the
//!   upstream and the answer back, in a [`body::Body`];
//! - any failure becomes [`error::Error`], whose one table gives the status
//!   and the JSON body.
//!
//! [`server`] hands each connection to [`connection`], which does the TLS
//! handshake (certificates from [`tls`]), picks HTTP/1.1 or HTTP/2 and keeps
//! every phase within [`bounds`]; `http://` upstreams are reached through
//! the connections of [`pool`], `https://` ones through the clients in
//! [`upstream_tls`].
//!
//! [`access`] follows each request (request id, timings, access-log line)
//! into [`metrics`], which [`admin`] serves with health and readiness.
//! [`config`] turns `gateway.toml` into a validated [`config::Config`];
//! [`reload`] puts a changed file in force; [`dev`] is the built-in echo
//! upstream for trying wxgate locally.

#![forbid(unsafe_code)]

pub mod access;
pub mod admin;
pub mod auth;
pub mod body;
pub mod bounds;
pub mod config;
pub mod connection;
pub mod dev;
pub mod error;
pub mod forward_auth;
#[doc(hidden)]
pub mod fuzzing;
pub mod gateway;
pub mod headers;
pub mod jwks;
pub mod login;
pub mod metrics;
pub mod path;
pub mod pool;
pub mod proxy;
pub mod ratelimit;
pub mod reload;
pub mod router;
pub mod secret;
pub mod server;
pub mod store;
pub mod tls;
pub mod token;
pub mod tunnel;
pub mod upstream_tls;
pub mod wechat;

use std::future::Future;
use std::io;

use tokio::net::TcpListener;

pub use config::Config;
pub use gateway::Gateway;

/// The sockets a gateway serves, bound before it starts (tests bind port 0).
pub struct Listeners {
    pub main: TcpListener,
    pub admin: Option<TcpListener>,
    /// `[dev] echo_upstream`.
    pub echo: Option<TcpListener>,
}

impl Listeners {
    /// Binds every address the config names.
    pub async fn bind(config: &Config) -> io::Result<Listeners> {
        let bind = |addr| async move {
            TcpListener::bind(addr)
                .await
                .map_err(|e| io::Error::new(e.kind(), format!("cannot listen on {addr}: {e}")))
        };
        Ok(Listeners {
            main: bind(config.server.listen).await?,
            admin: match &config.admin {
                Some(admin) => Some(bind(admin.listen).await?),
                None => None,
            },
            echo: match config.dev.echo_upstream {
                Some(addr) => Some(bind(addr).await?),
                None => None,
            },
        })
    }
}

/// Runs the gateway on `listeners` until `shutdown` resolves and the drain
/// is over.
pub async fn run(gw: Gateway, listeners: Listeners, shutdown: impl Future<Output = ()>) {
    let mut side_tasks = Vec::new();
    if let Some(admin) = listeners.admin {
        side_tasks.push(tokio::spawn(admin::serve(gw.clone(), admin)));
    }
    if let Some(echo) = listeners.echo {
        side_tasks.push(tokio::spawn(dev::serve_echo(echo)));
    }
    server::serve(gw, listeners.main, shutdown).await;
    for task in side_tasks {
        task.abort();
    }
}

/// Reloads the config file into `gw`: see [`reload`](mod@reload).
pub fn reload(gw: &Gateway) -> Result<(), String> {
    reload::reload(gw)
}

//! wxgate: a reverse-proxy authentication gateway for WeChat mini-programs.
//!
//! The path of one request, in the order of the modules it passes through:
//!
//! 1. [`server`] accepts the connection ([`server::connection`]: TLS from
//!    [`server::tls`], HTTP/1.1 or HTTP/2, every phase within
//!    [`server::deadlines`]) and hands each request to
//! 2. [`dispatch`], which takes the [`state::Snapshot`] in force (what one
//!    version of the config determines) for the whole request, normalizes
//!    the path ([`http::path`]) and asks
//! 3. [`router`] for wxgate's own endpoint or the route with the longest
//!    matching prefix. Own endpoints: [`login`] (login, session, logout:
//!    each code exchanged through [`wechat`] once across replicas, sessions
//!    and revocations kept in [`store`], in memory or in Redis), the JWK Set ([`auth::jwks`]) and the forward-auth check
//!    ([`auth::forward_auth`]). A route goes on to
//! 4. [`auth`], which takes the token from the request and verifies it
//!    ([`auth::token`]), then to
//! 5. [`proxy`], which rewrites the request with [`http::headers`] (strip
//!    what the client may not say, inject the verified identity) and sends
//!    it through
//! 6. [`upstream`], whose `Reach::send` is the one way out: the `http://`
//!    connection pools for small requests, hyper-util's clients for the
//!    rest, the WebSocket tunnel. The answer streams back in an
//!    [`http::body::Body`], after the one rule for answers in [`proxy`].
//!
//! Any failure becomes an [`error::Error`], whose one table gives the status
//! and the JSON body. Beside the request path: [`ops`] (metrics, the access
//! log and each request's record, the admin listener, config reloads),
//! [`config`] (`gateway.toml` into a validated [`Config`]), [`secret`] (the
//! masked secret type) and [`dev`] (the built-in echo upstream).
//!
//! Off the request path, on a listener of its own: [`internal`], the API
//! the operator's own services call for what only wxgate holds (each app's
//! WeChat access_token, kept by [`wechat::access_token`]; a relay to
//! WeChat's server APIs; decryption with a user's session_key).
//!
//! No two modules import each other, directly or through others:
//! `.ci/check-layering` fails on a cycle.

#![forbid(unsafe_code)]
// The library serves the binary and its tests; its docs are for the people
// working on it (`cargo doc --document-private-items`), so they link to
// private items freely.
#![allow(rustdoc::private_intra_doc_links)]

pub mod auth;
pub mod config;
pub(crate) mod dev;
pub(crate) mod dispatch;
pub(crate) mod error;
#[doc(hidden)]
pub mod fuzzing;
pub(crate) mod http;
pub(crate) mod internal;
pub(crate) mod login;
pub mod ops;
pub(crate) mod proxy;
pub(crate) mod router;
pub mod secret;
pub(crate) mod server;
pub mod state;
pub mod store;
pub(crate) mod upstream;
pub(crate) mod wechat;

use std::future::Future;
use std::io;

use tokio::net::TcpListener;

pub use config::Config;
pub use state::Gateway;

/// The sockets a gateway serves, bound before it starts (tests bind port 0).
pub struct Listeners {
    pub main: TcpListener,
    pub admin: Option<TcpListener>,
    /// `[dev] echo_upstream`.
    pub echo: Option<TcpListener>,
    /// `[internal]`: the internal API.
    pub internal: Option<TcpListener>,
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
            internal: match &config.internal {
                Some(internal) => Some(bind(internal.listen).await?),
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
        side_tasks.push(tokio::spawn(ops::admin::serve(gw.clone(), admin)));
    }
    if let Some(internal) = listeners.internal {
        side_tasks.push(tokio::spawn(internal::serve(gw.clone(), internal)));
    }
    if let Some(echo) = listeners.echo {
        side_tasks.push(tokio::spawn(dev::serve_echo(echo)));
    }
    server::serve(gw, listeners.main, shutdown).await;
    for task in side_tasks {
        task.abort();
    }
}

//! One accepted connection on the main listener, from the first byte to the
//! last: the TLS handshake when the listener has a certificate, the choice of
//! HTTP/1.1 or HTTP/2, the bound on the time to the first request, and the
//! graceful close when the server drains.
//!
//! Protocol choice: with TLS, ALPN decides (`h2` goes straight to HTTP/2,
//! `http/1.1` to HTTP/1.1 with upgrades, so WebSockets work over `wss://`);
//! without TLS, or when the client offered no ALPN, the first bytes decide
//! (the HTTP/2 preface, else HTTP/1.1).

use std::convert::Infallible;
use std::fmt::Display;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;

use hyper::server::conn::{http1, http2};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::net::TcpStream;
use tokio::sync::{watch, OwnedSemaphorePermit};
use tokio::time::Instant;
use tokio_rustls::TlsAcceptor;

use crate::bounds::{self, Activity};
use crate::config::ServerConfig;
use crate::gateway::{ConnInfo, Gateway};
use crate::metrics::OpenConnection;
use crate::tls::{ALPN_H2, ALPN_HTTP1};

/// hyper refuses a smaller read buffer.
const MIN_BUF_SIZE: usize = 8192;

/// The HTTP settings for every connection, built once per listener.
pub struct Protocols {
    /// Cleartext, and TLS without ALPN: sniffs the HTTP/2 preface.
    auto: auto::Builder<TokioExecutor>,
    /// TLS with ALPN `http/1.1`.
    http1: http1::Builder,
    /// TLS with ALPN `h2`.
    http2: http2::Builder<TokioExecutor>,
}

/// The same HTTP/1.1 settings on hyper's builder and on the auto builder's
/// half: two types with the same methods.
macro_rules! http1_settings {
    ($builder:expr, $config:expr) => {
        $builder
            .timer(TokioTimer::new())
            .header_read_timeout($config.header_timeout)
            .max_buf_size($config.max_header_bytes.max(MIN_BUF_SIZE))
            // A client that shuts its write side after a request still gets
            // the answer (without this, hyper drops a request that the
            // upstream may already have acted on).
            .half_close(true)
            .keep_alive(true)
    };
}

macro_rules! http2_settings {
    ($builder:expr, $config:expr) => {
        $builder
            .timer(TokioTimer::new())
            .max_header_list_size(u32::try_from($config.max_header_bytes).unwrap_or(u32::MAX))
    };
}

impl Protocols {
    pub fn new(config: &ServerConfig) -> Protocols {
        let mut auto = auto::Builder::new(TokioExecutor::new());
        http1_settings!(auto.http1(), config);
        http2_settings!(auto.http2(), config);
        let mut http1 = http1::Builder::new();
        http1_settings!(http1, config);
        let mut http2 = http2::Builder::new(TokioExecutor::new());
        http2_settings!(http2, config);
        Protocols { auto, http1, http2 }
    }
}

/// An accepted connection and what serving it needs.
pub struct Connection {
    pub gw: Gateway,
    pub peer: SocketAddr,
    pub protocols: Arc<Protocols>,
    /// The TLS handshake and the first request head must be done by then
    /// (accept time + `server.header_timeout`).
    pub deadline: Instant,
    /// A connection that starts no request for this long is closed.
    pub idle_timeout: std::time::Duration,
    /// Turns true when the server drains.
    pub draining: watch::Receiver<bool>,
    /// The connection's place under `server.max_connections`, held from
    /// accept (handshake included) to close, and shared with a WebSocket
    /// tunnel, which outlives hyper's connection.
    pub permit: Arc<OwnedSemaphorePermit>,
    /// Counts the connection in `wxgate_connections_open` until it closes.
    pub open: OpenConnection,
}

impl Connection {
    /// Serves plain HTTP/1.1 or HTTP/2 (prior knowledge).
    pub async fn serve_plain(self, stream: TcpStream) {
        let (service, activity) = self.service("http");
        let protocols = self.protocols.clone();
        let conn = protocols
            .auto
            .serve_connection_with_upgrades(TokioIo::new(stream), service);
        self.drive(conn, |c| c.graceful_shutdown(), &activity).await;
    }

    /// Completes a TLS handshake with `tls`, then serves the protocol ALPN
    /// chose. A failed or slow handshake closes the connection; the accept
    /// loop never sees it.
    pub async fn serve_tls(self, stream: TcpStream, tls: Arc<rustls::ServerConfig>) {
        let accept = TlsAcceptor::from(tls).accept(stream);
        let stream = match tokio::time::timeout_at(self.deadline, accept).await {
            Ok(Ok(stream)) => stream,
            Ok(Err(e)) => {
                tracing::debug!(peer = %self.peer, error = %e, "TLS handshake failed");
                return;
            }
            Err(_) => {
                tracing::debug!(peer = %self.peer, "no TLS handshake within header_timeout; closing");
                return;
            }
        };
        let alpn = stream.get_ref().1.alpn_protocol();
        let (h2, http1) = (alpn == Some(ALPN_H2), alpn == Some(ALPN_HTTP1));
        let io = TokioIo::new(stream);
        let (service, activity) = self.service("https");
        let protocols = self.protocols.clone();
        if h2 {
            let conn = protocols.http2.serve_connection(io, service);
            self.drive(conn, |c| c.graceful_shutdown(), &activity).await;
        } else if http1 {
            let conn = protocols
                .http1
                .serve_connection(io, service)
                .with_upgrades();
            self.drive(conn, |c| c.graceful_shutdown(), &activity).await;
        } else {
            let conn = protocols.auto.serve_connection_with_upgrades(io, service);
            self.drive(conn, |c| c.graceful_shutdown(), &activity).await;
        }
    }

    /// The request handler, and what it tells the driver of each request.
    /// (The handler's future is an unnameable `async` block: boxing it to
    /// name the type would allocate per request.)
    #[allow(clippy::type_complexity)]
    fn service(
        &self,
        proto: &'static str,
    ) -> (
        impl hyper::service::Service<
                http::Request<hyper::body::Incoming>,
                Response = http::Response<crate::body::Body>,
                Error = Infallible,
                Future = impl Future<Output = Result<http::Response<crate::body::Body>, Infallible>>
                             + Send
                             + 'static,
            > + Send
            + 'static,
        Arc<Activity>,
    ) {
        let mut conn_info = ConnInfo::new(self.peer, proto);
        conn_info.slot = Some(self.permit.clone());
        let gw = self.gw.clone();
        let activity = Arc::new(Activity::default());
        let started = activity.clone();
        let service = service_fn(move |req| {
            started.request_started();
            let (gw, conn_info) = (gw.clone(), conn_info.clone());
            async move { Ok::<_, Infallible>(gw.handle(req, conn_info).await) }
        });
        (service, activity)
    }

    /// Runs `conn` to its end, bounded at every phase (see [`bounds`]).
    async fn drive<C, E>(self, conn: C, graceful: impl FnMut(Pin<&mut C>), activity: &Activity)
    where
        C: Future<Output = Result<(), E>>,
        E: Display,
    {
        bounds::drive(
            conn,
            graceful,
            activity,
            self.deadline,
            self.idle_timeout,
            self.draining,
            self.peer,
        )
        .await;
        drop((self.permit, self.open));
    }
}

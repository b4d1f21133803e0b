//! The main listener: accept, serve HTTP/1.1 and HTTP/2 on each connection,
//! bound the number of connections, and drain gracefully on shutdown.

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::{Notify, Semaphore};
use tokio::task::JoinSet;

use crate::config::ServerConfig;
use crate::gateway::{ConnInfo, Gateway};

/// hyper refuses a smaller read buffer.
const MIN_BUF_SIZE: usize = 8192;

/// Serves `listener` until `shutdown` resolves, then stops accepting and lets
/// in-flight requests finish for up to `server.shutdown_grace`.
pub async fn serve(gw: Gateway, listener: TcpListener, shutdown: impl Future<Output = ()>) {
    let config = gw.runtime().config.server.clone();
    let builder = builder(&config);
    let limit = Arc::new(Semaphore::new(config.max_connections));
    let graceful = GracefulShutdown::new();
    // Owned here so that what outlives the grace can be closed.
    let mut connections = JoinSet::new();
    tokio::pin!(shutdown);

    loop {
        // Past the limit, new connections wait in the kernel's backlog.
        let permit = tokio::select! {
            permit = limit.clone().acquire_owned() => permit.expect("never closed"),
            () = &mut shutdown => break,
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // EMFILE and friends: log and go on; the permit returns.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::task::yield_now().await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let open = gw.metrics().connection_opened();
        let conn_info = ConnInfo::new(peer, "http");
        let gw = gw.clone();
        let first_request = Arc::new(Notify::new());
        let service = {
            let first_request = first_request.clone();
            service_fn(move |req| {
                first_request.notify_one();
                let (gw, conn_info) = (gw.clone(), conn_info.clone());
                async move { Ok::<_, Infallible>(gw.handle(req, conn_info).await) }
            })
        };
        let connection = builder
            .serve_connection_with_upgrades(TokioIo::new(stream), service)
            .into_owned();
        let connection = graceful.watch(connection);
        let header_timeout = config.header_timeout;
        while connections.try_join_next().is_some() {}
        connections.spawn(async move {
            // hyper's header timeout starts only once the protocol is known,
            // so a client that sends nothing (or half an HTTP/2 preface)
            // would hold its connection forever: bound the first request.
            let no_first_request = async {
                tokio::select! {
                    () = first_request.notified() => std::future::pending().await,
                    () = tokio::time::sleep(header_timeout) => {}
                }
            };
            tokio::select! {
                result = connection => if let Err(e) = result {
                    tracing::debug!(%peer, error = %e, "connection ended with an error");
                },
                () = no_first_request => {
                    tracing::debug!(%peer, "no request within header_timeout; closing");
                }
            }
            drop((permit, open));
        });
    }

    drop(listener);
    gw.set_draining();
    tracing::info!(grace = ?config.shutdown_grace, "draining");
    tokio::select! {
        () = graceful.shutdown() => tracing::info!("all connections closed"),
        () = tokio::time::sleep(config.shutdown_grace) => {
            tracing::warn!("shutdown grace over; closing the remaining connections");
        }
    }
    connections.shutdown().await;
}

fn builder(config: &ServerConfig) -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(config.header_timeout)
        .max_buf_size(config.max_header_bytes.max(MIN_BUF_SIZE))
        .keep_alive(true);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(u32::try_from(config.max_header_bytes).unwrap_or(u32::MAX));
    builder
}

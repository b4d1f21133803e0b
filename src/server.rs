//! The main listener: accept, serve HTTP/1.1 and HTTP/2 on each connection,
//! bound the number of connections, and drain gracefully on shutdown.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinSet;

use crate::config::ServerConfig;
use crate::conn::{self, Activity, Limits};
use crate::gateway::{ConnInfo, Gateway};

/// hyper refuses a smaller read buffer.
const MIN_BUF_SIZE: usize = 8192;

/// Serves `listener` until `shutdown` resolves, then stops accepting and lets
/// in-flight requests finish for up to `server.shutdown_grace`.
pub async fn serve(gw: Gateway, listener: TcpListener, shutdown: impl Future<Output = ()>) {
    let config = gw.runtime().config.server.clone();
    let builder = builder(&config);
    let limit = Arc::new(Semaphore::new(config.max_connections));
    let limits = Limits {
        header_timeout: config.header_timeout,
        idle_timeout: config.idle_timeout,
    };
    // Turned true at shutdown: every connection starts its graceful close.
    let draining = watch::Sender::new(false);
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
        let mut conn_info = ConnInfo::new(peer, "http");
        let permit = Arc::new(permit);
        conn_info.slot = Some(permit.clone());
        let gw = gw.clone();
        let activity = Arc::new(Activity::default());
        let service = {
            let activity = activity.clone();
            service_fn(move |req| {
                activity.request_started();
                let (gw, conn_info) = (gw.clone(), conn_info.clone());
                async move { Ok::<_, Infallible>(gw.handle(req, conn_info).await) }
            })
        };
        let connection = builder
            .serve_connection_with_upgrades(TokioIo::new(stream), service)
            .into_owned();
        let draining = draining.subscribe();
        while connections.try_join_next().is_some() {}
        connections.spawn(async move {
            let cut = |c: Pin<&mut _>| auto::UpgradeableConnection::graceful_shutdown(c);
            conn::drive(connection, cut, &activity, limits, draining, peer).await;
            drop(permit);
        });
    }

    drop(listener);
    gw.set_draining();
    tracing::info!(grace = ?config.shutdown_grace, "draining");
    tokio::select! {
        () = async {
            draining.send_replace(true);
            while connections.join_next().await.is_some() {}
        } => tracing::info!("all connections closed"),
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
        // A client that shuts its write side after a request still gets
        // the answer (without this, hyper drops a request that the
        // upstream may already have acted on).
        .half_close(true)
        .keep_alive(true);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(u32::try_from(config.max_header_bytes).unwrap_or(u32::MAX));
    builder
}

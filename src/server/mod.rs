//! The main listener: accept, bound the number of connections, hand each
//! one to [`connection`] (HTTP/1.1 and HTTP/2, over TLS
//! when `server.tls_cert` is set), and drain gracefully on shutdown.

pub mod connection;
pub mod deadlines;
pub mod tls;

use std::future::Future;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::server::connection::{Connection, Protocols};
use crate::state::Gateway;

/// Sets `TCP_NODELAY` on the listener; true when accepted sockets inherit
/// it (Linux does), so that it costs one setsockopt, not one per connection.
fn nodelay_for_accepted(listener: &TcpListener) -> bool {
    cfg!(target_os = "linux")
        && socket2::SockRef::from(listener)
            .set_tcp_nodelay(true)
            .is_ok()
}

/// Serves `listener` until `shutdown` resolves, then stops accepting and lets
/// in-flight requests finish for up to `server.shutdown_grace`.
pub async fn serve(gw: Gateway, listener: TcpListener, shutdown: impl Future<Output = ()>) {
    let config = gw.snapshot().config.server.clone();
    let protocols = Arc::new(Protocols::new(&config));
    // Whether the listener speaks TLS is fixed at start, like its address;
    // the certificate follows reloads (the runtime in force when a
    // connection is accepted, read without a lock).
    let mut tls = config.tls.as_ref().map(|t| t.config.clone());
    let limit = Arc::new(Semaphore::new(config.max_connections));
    let nodelay_inherited = nodelay_for_accepted(&listener);
    let (drain, draining) = watch::channel(false);
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
        if !nodelay_inherited {
            let _ = stream.set_nodelay(true);
        }
        let conn = Connection {
            gw: gw.clone(),
            peer,
            protocols: protocols.clone(),
            deadline: Instant::now() + config.header_timeout,
            header_timeout: config.header_timeout,
            idle_timeout: config.idle_timeout,
            draining: draining.clone(),
            permit: Arc::new(permit),
            open: gw.metrics().connection_opened(),
        };
        while connections.try_join_next().is_some() {}
        match &mut tls {
            None => connections.spawn(conn.serve_plain(stream)),
            Some(current) => {
                if let Some(reloaded) = &gw.snapshot().config.server.tls {
                    current.clone_from(&reloaded.config);
                }
                connections.spawn(conn.serve_tls(stream, current.clone()))
            }
        };
    }

    drop(listener);
    gw.set_draining();
    let _ = drain.send(true);
    tracing::info!(grace = ?config.shutdown_grace, "draining");
    let all_closed = async { while connections.join_next().await.is_some() {} };
    tokio::select! {
        () = all_closed => tracing::info!("all connections closed"),
        () = tokio::time::sleep(config.shutdown_grace) => {
            tracing::warn!("shutdown grace over; closing the remaining connections");
        }
    }
    connections.shutdown().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What skipping the per-connection setsockopt relies on.
    #[tokio::test]
    async fn accepted_sockets_get_the_listeners_nodelay() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let inherited = nodelay_for_accepted(&listener);
        assert_eq!(inherited, cfg!(target_os = "linux"));
        let addr = listener.local_addr().unwrap();
        let _client = tokio::net::TcpStream::connect(addr).await.unwrap();
        let (accepted, _) = listener.accept().await.unwrap();
        if inherited {
            assert!(accepted.nodelay().unwrap());
        }
    }
}

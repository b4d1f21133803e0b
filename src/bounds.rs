//! The life of one client connection once accepted: bounded at every phase
//! so that a client that sends nothing, or stops sending, cannot keep its
//! connection slot (one of `server.max_connections`).
//!
//! - Before the first request: `header_timeout` (hyper's own header timer
//!   starts only once it knows the protocol, so a silent client or half an
//!   HTTP/2 preface would otherwise stay forever).
//! - Between requests: `idle_timeout`. HTTP/1 keep-alive is also bounded by
//!   hyper's `header_read_timeout`, which runs while it waits for the next
//!   head; HTTP/2 has no such timer, and a live peer answers keep-alive
//!   pings, so an HTTP/2 connection that starts no new request for
//!   `idle_timeout` gets a graceful close (GOAWAY) here.
//! - At shutdown: a graceful close, in-flight requests first.
//!
//! A graceful close lets requests in flight finish; only then does the
//! connection end.
//!
//! Cost: a request start is one relaxed atomic add, nothing else. The driver
//! keeps one timer for the connection's life and looks at the request count
//! only when it fires (every `idle_timeout`, or at the first-request
//! deadline if sooner): if requests started since, it re-arms. So an idle connection is closed between one and
//! two `idle_timeout`s after its last request started, and the per-request
//! path has no wake-up and no timer to move.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::{pin, Pin};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::{sleep_until, Instant};

/// What the connection's service tells its driver.
#[derive(Default)]
pub struct Activity {
    /// Requests started on this connection so far.
    started: AtomicU64,
}

impl Activity {
    /// Called by the service at the start of every request.
    pub fn request_started(&self) {
        self.started.fetch_add(1, Ordering::Relaxed);
    }
}

/// Drives `connection` to its end. `first_deadline` bounds the wait for the
/// first request (accept time + `header_timeout`, so a TLS handshake counts);
/// `cut` starts its graceful close; `draining` turns true when the server
/// shuts down.
pub async fn drive<C, E>(
    connection: C,
    mut cut: impl FnMut(Pin<&mut C>),
    activity: &Activity,
    first_deadline: Instant,
    idle_timeout: Duration,
    mut draining: watch::Receiver<bool>,
    peer: SocketAddr,
) where
    C: Future<Output = Result<(), E>>,
    E: std::fmt::Display,
{
    let mut connection = pin!(connection);
    let mut timer = pin!(sleep_until(
        first_deadline.min(Instant::now() + idle_timeout)
    ));
    let mut cut_started = false;
    let mut seen = 0;
    loop {
        tokio::select! {
            result = connection.as_mut() => {
                if let Err(e) = result {
                    tracing::debug!(%peer, error = %e, "connection ended with an error");
                }
                return;
            }
            () = timer.as_mut(), if !cut_started => {
                let started = activity.started.load(Ordering::Relaxed);
                let now = Instant::now();
                if started == 0 {
                    if now < first_deadline {
                        timer.as_mut().reset(first_deadline.min(now + idle_timeout));
                        continue;
                    }
                    // Nothing arrived: there is nothing to finish either.
                    tracing::debug!(%peer, "no request within header_timeout; closing");
                    return;
                }
                if started != seen {
                    seen = started;
                    timer.as_mut().reset(now + idle_timeout);
                    continue;
                }
                tracing::debug!(%peer, "idle for idle_timeout; closing");
                cut(connection.as_mut());
                cut_started = true;
            }
            changed = draining.changed(), if !cut_started => {
                if changed.is_err() || *draining.borrow() {
                    cut(connection.as_mut());
                    cut_started = true;
                }
            }
        }
    }
}

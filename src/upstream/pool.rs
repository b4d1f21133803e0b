//! Pooled HTTP/1.1 connections to `http://` upstreams.
//!
//! One [`HostPool`] per upstream address, shared by every route and every
//! config version that forwards there, so a reload keeps warm connections.
//! A route holds its pool directly: a request finds its connection without
//! hashing, with one uncontended lock to pop it and one to push it back.
//!
//! Most requests (no body, or one of known length) are written and read by
//! their own task ([`HostPool::exchange`], wire format in `codec`): no
//! connection task, no channel, about a fifth fewer instructions per
//! request than hyper's client. WebSocket upgrades and bodies of unknown
//! length go through hyper's client ([`HostPool::send`]) on connections of
//! their own.
//!
//! A connection goes back to the pool when the upstream's answer has been
//! read to its end ([`Lease`], or [`UpstreamBody`]); an answer cut short, a
//! dropped request or a WebSocket upgrade drops it instead. A request that
//! a reused connection closed before answering (the upstream's keep-alive
//! timeout racing us) is sent again on another when that is safe. Idle
//! connections are closed after 45–90 s without use.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::Duration;

use http::uri::Authority;
use http::{Request, Response};
use hyper::body::Incoming;
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use crate::http::body::Body;

mod codec;
mod exchange;

use exchange::Conn;
pub use exchange::{BodyError, Outgoing, UpstreamBody};

/// Idle connections are closed after one to two of these.
const IDLE_SWEEP: Duration = Duration::from_secs(45);

/// Idle connections kept per upstream; more are closed when they come back.
const MAX_IDLE: usize = 1024;

/// Why a request got no answer from the upstream.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error("connect: {0}")]
    Connect(#[source] std::io::Error),
    #[error("no connection within {0:?}")]
    ConnectTimeout(Duration),
    #[error("HTTP/1.1 handshake: {0}")]
    Handshake(#[source] hyper::Error),
    #[error("request: {0}")]
    Request(#[source] hyper::Error),
    #[error("exchange: {0}")]
    Io(#[source] std::io::Error),
    #[error(transparent)]
    Protocol(codec::ProtocolError),
    #[error("client's body: {0}")]
    ClientBody(#[source] Box<dyn std::error::Error + Send + Sync>),
}

impl UpstreamError {
    /// True when no connection was made (nothing was sent).
    pub fn is_connect(&self) -> bool {
        matches!(
            self,
            UpstreamError::Connect(_) | UpstreamError::ConnectTimeout(_)
        )
    }
}

/// Every upstream's pool, by address. Touched only when a config is built.
/// Configs hold their pools; a pool no config (and no answer in flight)
/// uses any more is dropped, closing its idle connections.
pub struct Pools {
    by_authority: Mutex<HashMap<Authority, Weak<HostPool>>>,
    connect_timeout: Duration,
    sweep: Duration,
}

impl Pools {
    pub fn new(connect_timeout: Duration) -> Pools {
        Pools::with_sweep(connect_timeout, IDLE_SWEEP)
    }

    /// Idle connections closed after one to two `sweep`s.
    fn with_sweep(connect_timeout: Duration, sweep: Duration) -> Pools {
        Pools {
            by_authority: Mutex::new(HashMap::new()),
            connect_timeout,
            sweep,
        }
    }

    /// The pool for `authority`: the one in use, or a new one.
    pub fn get(&self, authority: &Authority) -> Arc<HostPool> {
        let mut pools = self
            .by_authority
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        pools.retain(|_, pool| pool.strong_count() > 0);
        if let Some(pool) = pools.get(authority).and_then(Weak::upgrade) {
            return pool;
        }
        let pool = Arc::new(HostPool::new(authority, self.connect_timeout, self.sweep));
        pools.insert(authority.clone(), Arc::downgrade(&pool));
        pool
    }
}

/// The connections to one upstream address.
pub struct HostPool {
    host: String,
    port: u16,
    connect_timeout: Duration,
    sweep: Duration,
    /// Most recently returned last: the warmest connection is reused first,
    /// and the coldest ones age out.
    idle: Mutex<IdleLists>,
    /// Advanced by the sweeper; an idle connection older than the previous
    /// sweep is closed.
    generation: AtomicU32,
    sweeper: AtomicBool,
}

/// Idle connections: those driven by hyper's client (after an upgrade
/// or a body of unknown length) and those of [`HostPool::exchange`].
#[derive(Default)]
struct IdleLists {
    hyper: Vec<Idle<http1::SendRequest<Body>>>,
    conns: Vec<Idle<Conn>>,
}

struct Idle<C> {
    conn: C,
    generation: u32,
}

/// A connection lent to one request, until its answer has been read.
pub struct Lease {
    sender: http1::SendRequest<Body>,
    pool: Arc<HostPool>,
}

impl std::fmt::Debug for Lease {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lease")
            .field(
                "upstream",
                &format_args!("{}:{}", self.pool.host, self.pool.port),
            )
            .finish()
    }
}

impl Lease {
    /// The answer was read to its end: the connection can serve another.
    pub fn release(self) {
        self.pool.put(self.sender);
    }
}

impl HostPool {
    fn new(authority: &Authority, connect_timeout: Duration, sweep: Duration) -> HostPool {
        let host = authority.host();
        HostPool {
            host: host
                .strip_prefix('[')
                .and_then(|h| h.strip_suffix(']'))
                .unwrap_or(host)
                .to_owned(),
            port: authority.port_u16().unwrap_or(80),
            connect_timeout,
            sweep,
            idle: Mutex::new(IdleLists::default()),
            generation: AtomicU32::new(0),
            sweeper: AtomicBool::new(false),
        }
    }

    /// Sends `request` (origin-form target, `Host` set) and waits for the
    /// answer's head. The [`Lease`] goes with the answer's body.
    pub async fn send(
        self: &Arc<Self>,
        mut request: Request<Body>,
    ) -> Result<(Response<Incoming>, Lease), UpstreamError> {
        loop {
            let (mut sender, reused) = match self.take_idle() {
                Some(sender) => (sender, true),
                None => (self.connect().await?, false),
            };
            match sender.try_send_request(request).await {
                Ok(response) => {
                    let lease = Lease {
                        sender,
                        pool: self.clone(),
                    };
                    return Ok((response, lease));
                }
                Err(mut e) => match e.take_message() {
                    // Never written: a reused connection that had closed.
                    // Try the next one (the list is finite; a new connection
                    // that fails this way is an error).
                    Some(unsent) if reused => request = unsent,
                    _ => return Err(UpstreamError::Request(e.into_error())),
                },
            }
        }
    }

    /// The warmest idle connection that is ready for a request, if any.
    /// Closed ones are dropped; one just returned may still be finishing
    /// its previous exchange (the rest of a request body, say) and is left
    /// for later rather than waited for.
    fn take_idle(&self) -> Option<http1::SendRequest<Body>> {
        let mut lists = self.lock();
        let idle = &mut lists.hyper;
        let mut i = idle.len();
        while i > 0 {
            i -= 1;
            if idle[i].conn.is_ready() {
                return Some(idle.remove(i).conn);
            }
            if idle[i].conn.is_closed() {
                // What moves into `i` was already looked at.
                idle.swap_remove(i);
            }
        }
        None
    }

    /// The warmest idle connection of [`HostPool::exchange`]'s that is
    /// still open. Closed ones are dropped (outside the lock).
    fn take_conn(&self) -> Option<Conn> {
        loop {
            let conn = self.lock().conns.pop()?.conn;
            if conn.is_idle_open() {
                return Some(conn);
            }
        }
    }

    fn put_conn(&self, conn: Conn) {
        let generation = self.generation.load(Ordering::Relaxed);
        let mut lists = self.lock();
        if lists.conns.len() < MAX_IDLE {
            lists.conns.push(Idle { conn, generation });
        }
    }

    async fn connect(self: &Arc<Self>) -> Result<http1::SendRequest<Body>, UpstreamError> {
        let stream = self.connect_stream().await?;
        let (sender, connection) = http1::Builder::new()
            .handshake(TokioIo::new(stream))
            .await
            .map_err(UpstreamError::Handshake)?;
        tokio::spawn(async move {
            if let Err(e) = connection.with_upgrades().await {
                tracing::debug!(error = %e, "upstream connection ended");
            }
        });
        Ok(sender)
    }

    async fn connect_stream(self: &Arc<Self>) -> Result<TcpStream, UpstreamError> {
        self.start_sweeper();
        let stream = tokio::time::timeout(self.connect_timeout, self.tcp())
            .await
            .map_err(|_| UpstreamError::ConnectTimeout(self.connect_timeout))?
            .map_err(UpstreamError::Connect)?;
        let _ = stream.set_nodelay(true);
        Ok(stream)
    }

    async fn tcp(&self) -> std::io::Result<TcpStream> {
        match self.host.parse::<IpAddr>() {
            Ok(ip) => TcpStream::connect(SocketAddr::new(ip, self.port)).await,
            // Resolved on every new connection, so DNS changes are followed.
            Err(_) => TcpStream::connect((self.host.as_str(), self.port)).await,
        }
    }

    fn put(&self, sender: http1::SendRequest<Body>) {
        if sender.is_closed() {
            return;
        }
        let generation = self.generation.load(Ordering::Relaxed);
        let mut lists = self.lock();
        if lists.hyper.len() < MAX_IDLE {
            lists.hyper.push(Idle {
                conn: sender,
                generation,
            });
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, IdleLists> {
        self.idle.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Closes connections left idle, from a task that ends with the pool.
    fn start_sweeper(self: &Arc<Self>) {
        if self.sweeper.swap(true, Ordering::Relaxed) {
            return;
        }
        let (pool, sweep): (Weak<HostPool>, _) = (Arc::downgrade(self), self.sweep);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(sweep);
            tick.tick().await;
            loop {
                tick.tick().await;
                let Some(pool) = pool.upgrade() else { return };
                let now = pool.generation.fetch_add(1, Ordering::Relaxed);
                // Dropped outside the lock.
                let stale = {
                    let mut lists = pool.lock();
                    let hyper: Vec<_> = std::mem::take(&mut lists.hyper);
                    let (keep, stale_hyper): (Vec<_>, Vec<_>) = hyper
                        .into_iter()
                        .partition(|i| i.generation == now && !i.conn.is_closed());
                    lists.hyper = keep;
                    let conns: Vec<_> = std::mem::take(&mut lists.conns);
                    let (keep, stale_conns): (Vec<_>, Vec<_>) =
                        conns.into_iter().partition(|i| i.generation == now);
                    lists.conns = keep;
                    (stale_hyper, stale_conns)
                };
                drop(stale);
            }
        });
    }
}

#[cfg(test)]
mod tests;

//! Pooled HTTP/1.1 connections to `http://` upstreams.
//!
//! One [`HostPool`] per upstream address, shared by every route and every
//! config version that forwards there, so a reload keeps warm connections.
//! A route holds its pool directly: a request finds its connection without
//! hashing, with one uncontended lock to pop it and one to push it back.
//!
//! A request (no body, or a small one of known length) is written and read
//! by its own task ([`HostPool::exchange`], wire format in `codec`): no
//! connection task, no channel, about a fifth fewer instructions per
//! request than hyper's client. The rest (WebSocket upgrades, large bodies,
//! bodies of unknown length) go through hyper-util's client instead: see
//! [`super::Reach::send`], the one place that chooses.
//!
//! A connection goes back to the pool when the upstream's answer has been
//! read to its end ([`UpstreamBody`]); an answer cut short or a dropped
//! request drops it instead. A request that
//! a reused connection closed before answering (the upstream's keep-alive
//! timeout racing us) is sent again on another when that is safe. Idle
//! connections are closed after 45–90 s without use.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::Duration;

use http::uri::Authority;
use tokio::net::TcpStream;

pub(crate) mod codec;
mod exchange;

use exchange::Conn;
pub use exchange::{Outgoing, UpstreamBody};

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
    idle: Mutex<Vec<Idle>>,
    /// Advanced by the sweeper; an idle connection older than the previous
    /// sweep is closed.
    generation: AtomicU32,
    sweeper: AtomicBool,
}

struct Idle {
    conn: Conn,
    generation: u32,
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
            idle: Mutex::new(Vec::new()),
            generation: AtomicU32::new(0),
            sweeper: AtomicBool::new(false),
        }
    }

    /// The warmest idle connection of [`HostPool::exchange`]'s that is
    /// still open. Closed ones are dropped (outside the lock).
    fn take_conn(&self) -> Option<Conn> {
        loop {
            let conn = self.lock().pop()?.conn;
            if conn.is_idle_open() {
                return Some(conn);
            }
        }
    }

    fn put_conn(&self, conn: Conn) {
        let generation = self.generation.load(Ordering::Relaxed);
        let mut idle = self.lock();
        if idle.len() < MAX_IDLE {
            idle.push(Idle { conn, generation });
        }
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

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Idle>> {
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
                let stale: Vec<Idle> = {
                    let mut idle = pool.lock();
                    let (keep, stale) = std::mem::take(&mut *idle)
                        .into_iter()
                        .partition(|i| i.generation == now);
                    *idle = keep;
                    stale
                };
                drop(stale);
            }
        });
    }
}

#[cfg(test)]
mod tests;

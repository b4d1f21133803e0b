//! A WebSocket tunnel after the upgrade: bytes both ways, unchanged, until
//! either side closes, or until nothing has passed either way for
//! `server.idle_timeout` (nginx's `proxy_read_timeout` does the same), so a
//! forgotten tunnel cannot keep its connection slot forever. Clients that
//! want a quiet tunnel to live send WebSocket pings.
//!
//! Like the connection bounds, the check is lazy: one timer per tunnel,
//! looking at a byte counter when it fires. A tunnel is closed one to two
//! periods after its last byte; moving data costs one relaxed atomic add per
//! read.

use std::pin::{pin, Pin};
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{interval_at, Instant, MissedTickBehavior};

/// The `AsyncWrite` methods of a wrapper that changes only reading: each
/// goes to the wrapped stream in `self.$field`.
macro_rules! delegate_async_write {
    ($field:ident) => {
        fn poll_write(
            mut self: std::pin::Pin<&mut Self>,
            cx: &mut std::task::Context<'_>,
            buf: &[u8],
        ) -> std::task::Poll<std::io::Result<usize>> {
            std::pin::Pin::new(&mut self.$field).poll_write(cx, buf)
        }

        fn poll_flush(
            mut self: std::pin::Pin<&mut Self>,
            cx: &mut std::task::Context<'_>,
        ) -> std::task::Poll<std::io::Result<()>> {
            std::pin::Pin::new(&mut self.$field).poll_flush(cx)
        }

        fn poll_shutdown(
            mut self: std::pin::Pin<&mut Self>,
            cx: &mut std::task::Context<'_>,
        ) -> std::task::Poll<std::io::Result<()>> {
            std::pin::Pin::new(&mut self.$field).poll_shutdown(cx)
        }

        fn poll_write_vectored(
            mut self: std::pin::Pin<&mut Self>,
            cx: &mut std::task::Context<'_>,
            bufs: &[std::io::IoSlice<'_>],
        ) -> std::task::Poll<std::io::Result<usize>> {
            std::pin::Pin::new(&mut self.$field).poll_write_vectored(cx, bufs)
        }

        fn is_write_vectored(&self) -> bool {
            self.$field.is_write_vectored()
        }
    };
}
pub(crate) use delegate_async_write;

/// Copies between `client` and `upstream` until one closes or the tunnel
/// has been idle for `idle`; both are closed on return.
pub async fn splice<A, B>(client: A, upstream: B, idle: Duration)
where
    A: AsyncRead + AsyncWrite + Unpin,
    B: AsyncRead + AsyncWrite + Unpin,
{
    let moved = AtomicU64::new(0);
    let mut client = Counted {
        io: client,
        moved: &moved,
    };
    let mut upstream = Counted {
        io: upstream,
        moved: &moved,
    };
    let mut copy = pin!(tokio::io::copy_bidirectional(&mut client, &mut upstream));
    let mut tick = interval_at(Instant::now() + idle, idle);
    // A late tick must not be followed at once by another that finds no
    // bytes: the silence is measured in whole periods.
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut seen = 0;
    loop {
        tokio::select! {
            result = copy.as_mut() => {
                if let Err(e) = result {
                    tracing::debug!(error = %e, "tunnel ended with an error");
                }
                return;
            }
            _ = tick.tick() => {
                let now = moved.load(Ordering::Relaxed);
                if now == seen {
                    tracing::debug!("tunnel idle for idle_timeout; closing");
                    return;
                }
                seen = now;
            }
        }
    }
}

/// Counts reads that brought bytes; writes pass through.
struct Counted<'a, T> {
    io: T,
    moved: &'a AtomicU64,
}

impl<T: AsyncRead + Unpin> AsyncRead for Counted<'_, T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.io).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.moved.fetch_add(1, Ordering::Relaxed);
        }
        polled
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Counted<'_, T> {
    delegate_async_write!(io);
}

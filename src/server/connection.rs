//! One accepted connection on the main listener, from the first byte to the
//! last: the TLS handshake when the listener has a certificate, the choice of
//! HTTP/1.1 or HTTP/2, the bound on the time to the first request, and the
//! graceful close when the server drains.
//!
//! Protocol choice: with TLS, ALPN decides (`h2` goes straight to HTTP/2,
//! `http/1.1` to HTTP/1.1 with upgrades, so WebSockets work over `wss://`);
//! without TLS, or when the client offered no ALPN, the first bytes decide
//! (the HTTP/2 preface, else HTTP/1.1). They are read with the first request
//! in one read of up to 4 KiB and handed back to hyper ([`Rewind`]), so
//! telling the protocols apart costs no read of its own.

use std::convert::Infallible;
use std::fmt::Display;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::{Buf, Bytes, BytesMut};
use hyper::server::conn::{http1, http2};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::{watch, OwnedSemaphorePermit};
use tokio::time::Instant;
use tokio_rustls::TlsAcceptor;

use crate::config::ServerConfig;
use crate::http::body::Body;
use crate::ops::metrics::OpenConnection;
use crate::server::deadlines::{self, Activity, Limits, Tracked};
use crate::server::tls::{ALPN_H2, ALPN_HTTP1};
use crate::state::{ConnInfo, Gateway};

/// hyper refuses a smaller read buffer.
const MIN_BUF_SIZE: usize = 8192;

/// What a client with prior knowledge of HTTP/2 sends first (RFC 9113 §3.4).
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// The first read's size: a whole ordinary request head, usually.
const FIRST_READ: usize = 4096;

/// The HTTP settings for every connection, built once per listener.
pub struct Protocols {
    http1: http1::Builder,
    http2: http2::Builder<TokioExecutor>,
}

impl Protocols {
    pub fn new(config: &ServerConfig) -> Protocols {
        let mut http1 = http1::Builder::new();
        // No hyper timer: `header_timeout` for later request heads is
        // `bounds`'s, which arms no timer per request.
        http1
            .max_buf_size(config.max_header_bytes.max(MIN_BUF_SIZE))
            // A client that shuts its write side after a request still gets
            // the answer (without this, hyper drops a request that the
            // upstream may already have acted on).
            .half_close(true)
            .keep_alive(true);
        let mut http2 = http2::Builder::new(TokioExecutor::new());
        http2
            .timer(TokioTimer::new())
            .max_header_list_size(u32::try_from(config.max_header_bytes).unwrap_or(u32::MAX));
        Protocols { http1, http2 }
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
    /// Each later HTTP/1 request head must start within this of the last
    /// answer.
    pub header_timeout: std::time::Duration,
    /// A connection with no request in flight for this long is closed.
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
        self.serve_sniffed(stream, "http").await;
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
        match stream.get_ref().1.alpn_protocol() {
            Some(ALPN_H2) => self.serve_h2(TokioIo::new(stream), "https").await,
            Some(ALPN_HTTP1) => self.serve_http1(TokioIo::new(stream), "https").await,
            _ => self.serve_sniffed(stream, "https").await,
        }
    }

    /// Serves whichever protocol the first bytes show.
    async fn serve_sniffed<S>(self, mut stream: S, proto: &'static str)
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let first = match tokio::time::timeout_at(self.deadline, first_bytes(&mut stream)).await {
            Ok(Ok(first)) => first,
            Ok(Err(e)) => {
                tracing::debug!(peer = %self.peer, error = %e, "closed before a request");
                return;
            }
            Err(_) => {
                tracing::debug!(peer = %self.peer, "no request within header_timeout; closing");
                return;
            }
        };
        let h2 = first.starts_with(H2_PREFACE);
        let io = TokioIo::new(Rewind { first, stream });
        if h2 {
            self.serve_h2(io, proto).await;
        } else {
            self.serve_http1(io, proto).await;
        }
    }

    async fn serve_h2<I>(self, io: I, proto: &'static str)
    where
        I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
    {
        let (service, activity) = self.service(proto, false);
        let protocols = self.protocols.clone();
        let conn = Box::pin(protocols.http2.serve_connection(io, service));
        self.drive(
            conn,
            None,
            |c| c.get_mut().as_mut().graceful_shutdown(),
            &activity,
        )
        .await;
    }

    async fn serve_http1<I>(self, io: I, proto: &'static str)
    where
        I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
    {
        let (service, activity) = self.service(proto, true);
        let protocols = self.protocols.clone();
        let conn = Box::pin(
            protocols
                .http1
                .serve_connection(io, service)
                .with_upgrades(),
        );
        let head_timeout = Some(self.header_timeout);
        self.drive(
            conn,
            head_timeout,
            |c| c.get_mut().as_mut().graceful_shutdown(),
            &activity,
        )
        .await;
    }

    /// The request handler, and what it tells the driver of each request.
    /// `http1`: hyper polls each request inside the connection's own task,
    /// so the driver can time its upstream wait. (The handler's future is
    /// an unnameable `async` block: boxing it to name the type would
    /// allocate per request.)
    #[allow(clippy::type_complexity)]
    fn service(
        &self,
        proto: &'static str,
        http1: bool,
    ) -> (
        impl hyper::service::Service<
                http::Request<hyper::body::Incoming>,
                Response = http::Response<Tracked<Body>>,
                Error = Infallible,
                Future = impl Future<Output = Result<http::Response<Tracked<Body>>, Infallible>>
                             + Send
                             + 'static,
            > + Send
            + 'static,
        Arc<Activity>,
    ) {
        let mut conn_info = ConnInfo::new(self.peer, proto);
        conn_info.slot = Some(self.permit.clone());
        let gw = self.gw.clone();
        let activity = Arc::new(Activity::new(Instant::now()));
        if http1 {
            conn_info.clock = Some(activity.clone());
        }
        let requests = activity.clone();
        let service = service_fn(move |req| {
            let in_flight = requests.request_started();
            let (gw, conn_info) = (gw.clone(), conn_info.clone());
            async move {
                let answer = crate::dispatch::handle(&gw, req, conn_info).await;
                Ok::<_, Infallible>(answer.map(|body| Tracked::new(body, in_flight)))
            }
        });
        (service, activity)
    }

    /// Runs `conn` to its end, bounded at every phase (see [`deadlines`]).
    /// hyper's connection state is a few KiB: boxed once, it is not copied
    /// each time a future holding it is built.
    async fn drive<C, E>(
        self,
        conn: C,
        head_timeout: Option<std::time::Duration>,
        graceful: impl FnMut(Pin<&mut C>),
        activity: &Activity,
    ) where
        C: Future<Output = Result<(), E>>,
        E: Display,
    {
        let limits = Limits {
            first_deadline: self.deadline,
            head_timeout,
            idle_timeout: self.idle_timeout,
        };
        deadlines::drive(conn, graceful, activity, limits, self.draining, self.peer).await;
        drop((self.permit, self.open));
    }
}

/// Reads until the bytes tell HTTP/2's preface from anything else: one read
/// for any real client (a request's first bytes differ from the preface at
/// once, or the preface arrives whole).
async fn first_bytes<S: AsyncRead + Unpin>(stream: &mut S) -> std::io::Result<Bytes> {
    let mut buf = BytesMut::with_capacity(FIRST_READ);
    loop {
        if stream.read_buf(&mut buf).await? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        let n = buf.len().min(H2_PREFACE.len());
        if buf[..n] != H2_PREFACE[..n] || n == H2_PREFACE.len() {
            return Ok(buf.freeze());
        }
    }
}

/// A stream whose first bytes were already read: they are read again first.
struct Rewind<S> {
    first: Bytes,
    stream: S,
}

impl<S: AsyncRead + Unpin> AsyncRead for Rewind<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        if self.first.is_empty() {
            return Pin::new(&mut self.stream).poll_read(cx, buf);
        }
        let n = self.first.len().min(buf.remaining());
        buf.put_slice(&self.first[..n]);
        self.first.advance(n);
        if self.first.is_empty() {
            // Frees the first read's buffer.
            self.first = Bytes::new();
        }
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Rewind<S> {
    crate::upstream::tunnel::delegate_async_write!(stream);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Yields the chunks one read at a time, then EOF.
    struct Chunks(std::collections::VecDeque<&'static [u8]>);

    impl AsyncRead for Chunks {
        fn poll_read(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
            buf: &mut ReadBuf<'_>,
        ) -> Poll<std::io::Result<()>> {
            if let Some(chunk) = self.0.pop_front() {
                buf.put_slice(chunk);
            }
            Poll::Ready(Ok(()))
        }
    }

    fn chunks(parts: &[&'static [u8]]) -> Chunks {
        Chunks(parts.iter().copied().collect())
    }

    #[tokio::test]
    async fn the_first_bytes_decide_as_soon_as_they_can() {
        // An ordinary request: one read.
        let mut s = chunks(&[b"GET / HTTP/1.1\r\n\r\n", b"more"]);
        assert_eq!(
            first_bytes(&mut s).await.unwrap(),
            &b"GET / HTTP/1.1\r\n\r\n"[..]
        );
        // Looks like the preface for a byte, then does not.
        let mut s = chunks(&[b"P", b"OST / HTTP/1.1\r\n", b"more"]);
        assert_eq!(
            first_bytes(&mut s).await.unwrap(),
            &b"POST / HTTP/1.1\r\n"[..]
        );
        // The preface a byte at a time: read until all of it is there.
        let pieces: Vec<&'static [u8]> = H2_PREFACE.chunks(1).collect();
        let mut s = chunks(&pieces);
        assert_eq!(first_bytes(&mut s).await.unwrap(), H2_PREFACE);
        // Nothing at all, or a prefix of the preface, then EOF.
        for parts in [&[][..], &[&b"PRI * "[..]][..]] {
            let err = first_bytes(&mut chunks(parts)).await.unwrap_err();
            assert_eq!(err.kind(), std::io::ErrorKind::UnexpectedEof);
        }
    }

    #[tokio::test]
    async fn rewind_replays_the_first_bytes_then_reads_on() {
        let mut io = Rewind {
            first: Bytes::from_static(b"abcdef"),
            stream: chunks(&[b"gh", b"ij"]),
        };
        let mut out = Vec::new();
        let mut small = [0u8; 4];
        loop {
            let n = io.read(&mut small).await.unwrap();
            if n == 0 {
                break;
            }
            out.extend_from_slice(&small[..n]);
        }
        assert_eq!(out, b"abcdefghij");
    }
}

//! One request on a pooled connection, written and read by the request's
//! own task: no connection task, no channel between the two, and the
//! answer's body is read from the socket by whoever polls it.
//!
//! Taken for requests with no body or a small one of known length;
//! WebSocket upgrades and larger or unframed bodies go through hyper-util's
//! client ([`crate::upstream::Reach::send`] chooses). The wire format is
//! [`super::codec`].

use std::future::Future;
use std::pin::{pin, Pin};
use std::sync::Arc;
use std::task::{ready, Context, Poll, Waker};

use bytes::{Bytes, BytesMut};
use http::{HeaderMap, Method, Response};
use http_body::{Frame, SizeHint};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::codec::{self, Chunked, Decoded, Framing};
use super::{HostPool, UpstreamError};

/// Room made in the read buffer before a read: a whole small answer fits
/// the first, a large body streams in pieces of about this size.
const READ_CHUNK: usize = 16 * 1024;

/// A connection of ours to the upstream, between requests or in one.
pub struct Conn {
    stream: TcpStream,
    /// Bytes read and not yet taken; its allocation is reused.
    read: BytesMut,
    /// The request head being written; its allocation is reused.
    write: Vec<u8>,
}

impl Conn {
    pub(super) fn new(stream: TcpStream) -> Conn {
        Conn {
            stream,
            read: BytesMut::with_capacity(READ_CHUNK),
            write: Vec::with_capacity(1024),
        }
    }

    /// Still open with nothing unread, as far as the runtime has heard (no
    /// system call unless it heard something). An upstream that closed an
    /// idle connection is found here, not by the next request.
    pub(super) fn is_idle_open(&self) -> bool {
        let mut cx = Context::from_waker(Waker::noop());
        match self.stream.poll_read_ready(&mut cx) {
            Poll::Pending => true,
            // Readiness can outlive a read that filled the buffer exactly:
            // ask the socket.
            Poll::Ready(Ok(())) => matches!(
                self.stream.try_read(&mut [0; 1]),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock
            ),
            Poll::Ready(Err(_)) => false,
        }
    }

    /// Makes room for a read; the buffer keeps its allocation once every
    /// piece handed out of it has been dropped.
    fn reserve(&mut self) {
        if self.read.capacity() - self.read.len() < READ_CHUNK / 4 {
            self.read.reserve(READ_CHUNK);
        }
    }

    fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Result<usize>> {
        self.reserve();
        // `read_buf` reads once; a short read tells the runtime the socket
        // is drained, so the next wait costs no system call.
        pin!(self.stream.read_buf(&mut self.read)).poll(cx)
    }
}

/// What to send: the request's parts, rewritten for the upstream.
pub struct Outgoing<'a> {
    pub method: &'a Method,
    /// Origin form, as validated by `http::uri::PathAndQuery`.
    pub target: &'a str,
    pub headers: &'a HeaderMap,
    /// `None`: no body. Otherwise exactly `length` bytes, which the
    /// request's `Content-Length` says.
    pub body: Option<(Incoming, u64)>,
}

impl HostPool {
    /// Sends `out` on an idle connection or a new one and waits for the
    /// answer's head. A reused connection that turns out closed is
    /// replaced if the request could not be written on it, or if nothing
    /// came back and the request may be sent twice (idempotent, no body:
    /// RFC 9110 §9.2.2, RFC 9112 §9.3.1.1).
    pub async fn exchange(
        self: &Arc<Self>,
        mut out: Outgoing<'_>,
    ) -> Result<Response<UpstreamBody>, UpstreamError> {
        let retry = out.body.is_none() && out.method.is_idempotent();
        loop {
            let (mut conn, reused) = match self.take_conn() {
                Some(conn) => (conn, true),
                None => (Conn::new(self.connect_stream().await?), false),
            };
            match round_trip(&mut conn, &mut out).await {
                Ok(head) => return Ok(self.answer(conn, head)),
                Err(Failure::Unsent(_)) if reused => continue,
                Err(Failure::Unanswered(_)) if reused && retry => continue,
                Err(Failure::Unsent(e) | Failure::Unanswered(e) | Failure::Late(e)) => {
                    return Err(e)
                }
            }
        }
    }

    fn answer(self: &Arc<Self>, conn: Conn, head: codec::Head) -> Response<UpstreamBody> {
        let mut body = UpstreamBody {
            conn: Some(conn),
            pool: self.clone(),
            state: match head.framing {
                Framing::Length(n) => State::Length(n),
                Framing::Chunked => State::Chunked(Chunked::Size),
                Framing::Close => State::Close,
            },
            reusable: head.reusable,
            failed: None,
        };
        if head.framing == Framing::Length(0) {
            body.finish();
        }
        let mut response = Response::new(body);
        *response.status_mut() = head.status;
        *response.headers_mut() = head.headers;
        response
    }
}

/// Why an exchange failed, by how far it got.
enum Failure {
    /// The request head could not be written: the upstream cannot have
    /// acted on it.
    Unsent(UpstreamError),
    /// The connection closed before a byte of answer came back: the
    /// upstream may or may not have seen the request.
    Unanswered(UpstreamError),
    Late(UpstreamError),
}

async fn round_trip(conn: &mut Conn, out: &mut Outgoing<'_>) -> Result<codec::Head, Failure> {
    codec::encode_head(out.method, out.target, out.headers, &mut conn.write);
    let io = UpstreamError::Io;
    let write = conn.stream.write_all(&conn.write).await;
    write.map_err(|e| Failure::Unsent(io(e)))?;
    if let Some((body, length)) = out.body.take() {
        let sent = send_body(&mut conn.stream, body, length).await;
        sent.map_err(Failure::Late)?;
    }
    let mut heard = false;
    loop {
        match codec::parse_head(&mut conn.read, out.method) {
            Ok(Some(head)) => return Ok(head),
            Ok(None) => {}
            Err(e) => return Err(Failure::Late(UpstreamError::Protocol(e))),
        }
        let failed = match std::future::poll_fn(|cx| conn.poll_fill(cx)).await {
            Ok(0) => std::io::ErrorKind::UnexpectedEof.into(),
            Ok(_) => {
                heard = true;
                continue;
            }
            Err(e) => e,
        };
        return Err(match heard {
            true => Failure::Late(io(failed)),
            false => Failure::Unanswered(io(failed)),
        });
    }
}

/// Writes exactly `length` bytes of the client's body.
async fn send_body(
    stream: &mut TcpStream,
    mut body: Incoming,
    length: u64,
) -> Result<(), UpstreamError> {
    let mut sent = 0u64;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| UpstreamError::ClientBody(e.into()))?;
        // Trailers have no place in a body framed by its length.
        let Ok(data) = frame.into_data() else {
            continue;
        };
        sent += data.len() as u64;
        if sent > length {
            return Err(UpstreamError::ClientBody(
                "body longer than its Content-Length".into(),
            ));
        }
        stream.write_all(&data).await.map_err(UpstreamError::Io)?;
    }
    if sent != length {
        return Err(UpstreamError::ClientBody(
            "body shorter than its Content-Length".into(),
        ));
    }
    Ok(())
}

/// An upstream's answer body, read from the connection as it is polled.
/// The connection goes back to the pool the moment the body has ended (hyper
/// stops polling a body that says so); a body dropped before its end
/// closes it.
pub struct UpstreamBody {
    /// `None` once the body has ended.
    conn: Option<Conn>,
    pool: Arc<HostPool>,
    state: State,
    /// The answer's head allowed another request on this connection.
    reusable: bool,
    /// Why the body was cut short, reported at the next poll.
    failed: Option<UpstreamError>,
}

enum State {
    /// Bytes still to come.
    Length(u64),
    Chunked(Chunked),
    /// Until the upstream closes.
    Close,
}

impl std::fmt::Debug for UpstreamBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpstreamBody")
            .field("ended", &self.conn.is_none())
            .finish()
    }
}

impl UpstreamBody {
    /// The body has ended: the connection is reused if nothing about the
    /// answer forbids it and the upstream sent nothing past its end.
    fn finish(&mut self) {
        if let Some(conn) = self.conn.take() {
            if self.reusable && conn.read.is_empty() {
                self.pool.put_conn(conn);
            }
        }
    }

    /// Closes the connection and reports `e` at the next poll: hyper drops
    /// what it holds unwritten when a body fails, and the client should get
    /// the head and the data so far, cut short where the upstream was.
    fn fail(
        &mut self,
        e: UpstreamError,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        self.conn = None;
        self.failed = Some(e);
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}

/// An answer body cut short or malformed; the client's response is aborted.
#[derive(Debug, thiserror::Error)]
#[error("upstream answer body: {0}")]
pub struct BodyError(#[source] UpstreamError);

impl http_body::Body for UpstreamBody {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        let this = self.get_mut();
        loop {
            let Some(conn) = this.conn.as_mut() else {
                return Poll::Ready(this.failed.take().map(|e| Err(BodyError(e))));
            };
            let buffered = &mut conn.read;
            match &mut this.state {
                State::Length(left) if !buffered.is_empty() => {
                    let n = usize::try_from(*left)
                        .unwrap_or(usize::MAX)
                        .min(buffered.len());
                    let data = buffered.split_to(n).freeze();
                    *left -= n as u64;
                    if *left == 0 {
                        this.finish();
                    }
                    return Poll::Ready(Some(Ok(Frame::data(data))));
                }
                State::Chunked(chunked) => match chunked.decode(buffered) {
                    Ok(Decoded::Data(data)) => return Poll::Ready(Some(Ok(Frame::data(data)))),
                    Ok(Decoded::End(trailers)) => {
                        this.finish();
                        return Poll::Ready(trailers.map(|t| Ok(Frame::trailers(t))));
                    }
                    Ok(Decoded::NeedMore) => {}
                    Err(e) => return this.fail(UpstreamError::Protocol(e), cx),
                },
                State::Close if !buffered.is_empty() => {
                    let data = buffered.split().freeze();
                    return Poll::Ready(Some(Ok(Frame::data(data))));
                }
                State::Length(_) | State::Close => {}
            }
            match ready!(conn.poll_fill(cx)) {
                Ok(0) if matches!(this.state, State::Close) => {
                    this.conn = None;
                    return Poll::Ready(None);
                }
                Ok(0) => {
                    let eof = std::io::ErrorKind::UnexpectedEof.into();
                    return this.fail(UpstreamError::Io(eof), cx);
                }
                Ok(_) => {}
                Err(e) => return this.fail(UpstreamError::Io(e), cx),
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.conn.is_none() && self.failed.is_none()
    }

    fn size_hint(&self) -> SizeHint {
        match (&self.conn, &self.state) {
            (None, _) => SizeHint::with_exact(0),
            (Some(_), State::Length(n)) => SizeHint::with_exact(*n),
            (Some(_), _) => SizeHint::default(),
        }
    }
}

#[cfg(test)]
mod tests;

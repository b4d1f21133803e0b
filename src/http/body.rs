//! One body type for everything wxgate sends, in either direction, so the
//! proxy never boxes: small JSON answers, streamed upstream answers, and
//! client request bodies whose trailers pass the same filter as headers.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Frame, SizeHint};
use hyper::body::Incoming;

use crate::config::IdentityConfig;
use crate::http::headers::strip_client_headers;
use crate::upstream::pool::{Lease, UpstreamBody};

/// Whatever a body failed with; hyper aborts the message it was in.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

pub enum Body {
    Full(Option<Bytes>),
    /// An upstream's answer, streamed as it arrives, never collected. Its
    /// pooled connection goes back to the pool once the answer has been
    /// read to its end (`https://` upstreams pool on their own: `None`).
    Stream(Incoming, Option<Lease>),
    /// An upstream's answer read by [`crate::upstream::pool::HostPool::exchange`]'s
    /// connection itself.
    Direct(UpstreamBody),
    /// A client's request body: data passes, trailers are stripped of
    /// identity and hop-by-hop fields.
    Request(Incoming, Arc<IdentityConfig>),
}

impl Body {
    pub fn full(bytes: impl Into<Bytes>) -> Body {
        Body::Full(Some(bytes.into()))
    }

    pub fn empty() -> Body {
        Body::Full(None)
    }

    /// An upstream's answer on a connection lent by the pool.
    pub fn upstream(body: Incoming, mut lease: Option<Lease>) -> Body {
        release_if_ended(&body, &mut lease, false);
        Body::Stream(body, lease)
    }
}

/// Gives the connection back once the answer has been read: at `None`, or
/// as soon as the body says it has ended, since hyper stops polling a body
/// that says so.
fn release_if_ended(body: &Incoming, lease: &mut Option<Lease>, at_none: bool) {
    if lease.is_some() && (at_none || http_body::Body::is_end_stream(body)) {
        if let Some(lease) = lease.take() {
            lease.release();
        }
    }
}

impl http_body::Body for Body {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match self.get_mut() {
            Body::Full(bytes) => Poll::Ready(bytes.take().map(|b| Ok(Frame::data(b)))),
            Body::Direct(inner) => Pin::new(inner).poll_frame(cx).map_err(Into::into),
            Body::Stream(inner, lease) => {
                let frame = Pin::new(&mut *inner).poll_frame(cx);
                match &frame {
                    Poll::Ready(Some(Ok(_))) => release_if_ended(inner, lease, false),
                    Poll::Ready(None) => release_if_ended(inner, lease, true),
                    Poll::Ready(Some(Err(_))) | Poll::Pending => {}
                }
                frame.map_err(Into::into)
            }
            Body::Request(inner, identity) => Pin::new(inner)
                .poll_frame(cx)
                .map(|frame| {
                    frame.map(|result| {
                        result.map(|frame| match frame.into_trailers() {
                            Ok(mut trailers) => {
                                strip_client_headers(&mut trailers, identity);
                                Frame::trailers(trailers)
                            }
                            Err(frame) => frame,
                        })
                    })
                })
                .map_err(Into::into),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            Body::Full(bytes) => bytes.is_none(),
            Body::Direct(inner) => inner.is_end_stream(),
            Body::Stream(inner, _) | Body::Request(inner, _) => inner.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            Body::Full(Some(b)) => SizeHint::with_exact(b.len() as u64),
            Body::Full(None) => SizeHint::with_exact(0),
            Body::Direct(inner) => inner.size_hint(),
            Body::Stream(inner, _) | Body::Request(inner, _) => inner.size_hint(),
        }
    }
}

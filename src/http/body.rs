//! One body type for everything wxgate sends, in either direction, so the
//! proxy never boxes: small JSON answers, streamed upstream answers, and
//! client request bodies whose trailers pass the same filter as headers.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Frame, SizeHint};
use hyper::body::Incoming;

use crate::http::headers::StripRule;
use crate::upstream::pool::UpstreamBody;

/// Whatever a body failed with; hyper aborts the message it was in.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

pub enum Body {
    Full(Option<Bytes>),
    /// An upstream's answer through hyper-util's client, streamed as it
    /// arrives, never collected (the client pools its connection).
    Stream(Incoming),
    /// An upstream's answer read by [`crate::upstream::pool::HostPool::exchange`]'s
    /// connection itself.
    Direct(UpstreamBody),
    /// A client's request body: data passes, trailers are stripped by the
    /// same rule as the request's head.
    Request(Incoming, Arc<StripRule>),
}

impl Body {
    pub fn full(bytes: impl Into<Bytes>) -> Body {
        Body::Full(Some(bytes.into()))
    }

    pub fn empty() -> Body {
        Body::Full(None)
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
            Body::Stream(inner) => Pin::new(inner).poll_frame(cx).map_err(Into::into),
            Body::Request(inner, strip) => Pin::new(inner)
                .poll_frame(cx)
                .map(|frame| {
                    frame.map(|result| {
                        result.map(|frame| match frame.into_trailers() {
                            Ok(mut trailers) => {
                                strip.apply(&mut trailers);
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
            Body::Stream(inner) | Body::Request(inner, _) => inner.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            Body::Full(Some(b)) => SizeHint::with_exact(b.len() as u64),
            Body::Full(None) => SizeHint::with_exact(0),
            Body::Direct(inner) => inner.size_hint(),
            Body::Stream(inner) | Body::Request(inner, _) => inner.size_hint(),
        }
    }
}

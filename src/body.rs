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
use crate::headers::strip_client_headers;

pub enum Body {
    Full(Option<Bytes>),
    /// Streamed as it arrives, never collected.
    Stream(Incoming),
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
}

impl http_body::Body for Body {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        match self.get_mut() {
            Body::Full(bytes) => Poll::Ready(bytes.take().map(|b| Ok(Frame::data(b)))),
            Body::Stream(inner) => Pin::new(inner).poll_frame(cx),
            Body::Request(inner, identity) => Pin::new(inner).poll_frame(cx).map(|frame| {
                frame.map(|result| {
                    result.map(|frame| match frame.into_trailers() {
                        Ok(mut trailers) => {
                            strip_client_headers(&mut trailers, identity);
                            Frame::trailers(trailers)
                        }
                        Err(frame) => frame,
                    })
                })
            }),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            Body::Full(bytes) => bytes.is_none(),
            Body::Stream(inner) | Body::Request(inner, _) => inner.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            Body::Full(Some(b)) => SizeHint::with_exact(b.len() as u64),
            Body::Full(None) => SizeHint::with_exact(0),
            Body::Stream(inner) | Body::Request(inner, _) => inner.size_hint(),
        }
    }
}

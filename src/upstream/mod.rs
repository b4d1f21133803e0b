//! Reaching the upstreams. Each route holds a [`Reach`], resolved once per
//! config, and [`Reach::send`] is the one way a request goes out: small
//! requests to `http://` upstreams on the route's connection pool
//! ([`pool`], written and read by the request's own task), everything else
//! (`https://`, WebSocket upgrades, large bodies or bodies of unknown
//! length) through hyper-util's pooled clients ([`clients`]). Either way the
//! answer comes back as a [`Body`] to stream, its headers through the one
//! rule for answers ([`crate::http::headers::AnswerRule`]) either way.

pub mod clients;
pub mod pool;
pub mod tunnel;

use std::sync::Arc;
use std::time::Duration;

use http::header::{self, HeaderMap};
use http::uri::{PathAndQuery, Uri};
use http::{Request, Response, Version};
use http_body::Body as _;
use hyper::body::Incoming;

use crate::config::{Config, Upstream};
use crate::error::Error;
use crate::http::body::Body;
use crate::http::headers::{strip_response_headers, StripRule};
use crate::server::deadlines::Deadline;
use clients::{Client, Clients};
use pool::{HostPool, Outgoing, Pools};

/// The most of a request body the pool's connections send: one that fits
/// the socket's buffers is written before the answer can come. A larger
/// one goes through hyper's client, which reads an early answer (a 413,
/// say) while it is still sending.
const DIRECT_BODY_MAX: u64 = 64 * 1024;

/// The bound on making a TCP connection to an upstream.
pub(crate) fn connect_timeout(config: &Config) -> Duration {
    config
        .server
        .connect_timeout
        .min(config.server.request_timeout)
}

/// How one route reaches its upstream.
pub struct Reach {
    upstream: Upstream,
    /// `http://` upstreams: the connection pool of the upstream's address,
    /// shared with every route and config that forwards there.
    pool: Option<Arc<HostPool>>,
    /// For what the pool does not take (and everything `https://`).
    client: Client,
}

impl Reach {
    /// One per route of `config`, by route index.
    pub fn all(config: &Config, pools: &Pools) -> Result<Vec<Reach>, String> {
        let clients = Clients::new(config)?;
        Ok(config
            .routes
            .iter()
            .map(|route| {
                let upstream = route.upstream.clone();
                Reach {
                    pool: (upstream.scheme == http::uri::Scheme::HTTP)
                        .then(|| pools.get(&upstream.authority)),
                    client: clients.get(&upstream).clone(),
                    upstream,
                }
            })
            .collect())
    }

    /// Sends a request whose head is ready for the upstream (`target` in
    /// origin form, `Host` set) and waits for the answer's head until
    /// `deadline`. `trailers` filters a streamed request body's trailers
    /// like its head. `upgrade`: a WebSocket upgrade, whose answer can
    /// carry the upgraded connection.
    pub async fn send(
        &self,
        mut parts: http::request::Parts,
        target: PathAndQuery,
        body: Incoming,
        trailers: &Arc<StripRule>,
        upgrade: bool,
        deadline: Deadline<'_>,
    ) -> Result<Response<Body>, Error> {
        let body = match (&self.pool, upgrade) {
            (Some(pool), false) => match known_length(&parts.headers, body) {
                Ok(body) => {
                    let out = Outgoing {
                        method: &parts.method,
                        target: target.as_str(),
                        headers: &parts.headers,
                        body,
                    };
                    return match deadline.within(pool.exchange(out)).await {
                        None => Err(Error::UpstreamTimeout),
                        Some(Err(e)) => Err(self.failed(&e, e.is_connect())),
                        Some(Ok(answer)) => Ok(answer.map(Body::Direct)),
                    };
                }
                Err(body) => body,
            },
            _ => body,
        };
        parts.version = Version::HTTP_11;
        parts.uri = Uri::builder()
            .scheme(self.upstream.scheme.clone())
            .authority(self.upstream.authority.clone())
            .path_and_query(target)
            .build()
            .map_err(|_| Error::InvalidRequest("bad request target"))?;
        let request = Request::from_parts(parts, Body::Request(body, trailers.clone()));
        match deadline.within(self.client.request(request)).await {
            None => Err(Error::UpstreamTimeout),
            Some(Err(e)) => Err(self.failed(&e, e.is_connect())),
            Some(Ok(mut answer)) => {
                // The codec applies the one rule as it parses; hyper's
                // client hands its map over as the upstream sent it.
                strip_response_headers(answer.headers_mut());
                Ok(answer.map(Body::Stream))
            }
        }
    }

    fn failed(&self, e: &(dyn std::error::Error + 'static), connect: bool) -> Error {
        let cause = root_cause(e);
        tracing::warn!(upstream = %self.upstream, error = %e, %cause, connect, "upstream failed");
        Error::UpstreamUnavailable
    }
}

/// The body as [`HostPool::exchange`] sends it: `Ok(None)` when there is
/// none, `Ok(Some(..))` when it is small and of a known length that
/// `Content-Length` states, `Err` otherwise (hyper's client then frames it).
fn known_length(headers: &HeaderMap, body: Incoming) -> Result<Option<(Incoming, u64)>, Incoming> {
    if body.is_end_stream() {
        return Ok(None);
    }
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    match (body.size_hint().exact(), declared) {
        (Some(exact), Some(declared)) if exact == declared && exact <= DIRECT_BODY_MAX => {
            Ok(Some((body, exact)))
        }
        _ => Err(body),
    }
}

/// The innermost error (a certificate verdict, say), for the log line.
fn root_cause<'a>(
    e: &'a (dyn std::error::Error + 'static),
) -> &'a (dyn std::error::Error + 'static) {
    let mut cause = e;
    while let Some(next) = cause.source() {
        cause = next;
    }
    cause
}

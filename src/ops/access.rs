//! One request's record, from arrival to response head: its request id,
//! the route it matched, its timings and identity; at the end, its metrics
//! and its access-log line (target `wxgate::access`).
//!
//! The request id is a per-process random prefix and a counter: no syscall,
//! no lock. A client's own `X-Request-Id` is kept only from a trusted proxy
//! (`server.trusted_proxies`) and only when it looks like an id; anyone
//! else's is replaced, so ids in the upstream's logs can be believed.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use http::header::{HeaderName, HeaderValue};
use http::{Method, Request, Response};

use crate::auth::token::Verified;
use crate::http::body::Body;
use crate::http::request_id::{acceptable_id, RequestIds};
use crate::ops::metrics::{Metrics, RouteMetrics};
use crate::router::Target;
use crate::state::{ConnInfo, Snapshot};

pub const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The status counted and logged for a request whose client went away
/// before its response head was ready (nginx's "client closed request").
pub const CLIENT_CLOSED: u16 = 499;

/// What the gateway learns about one request while serving it. Dropped
/// unfinished (the client closed the connection and hyper dropped the
/// handler), it still counts and logs the request, as [`CLIENT_CLOSED`].
pub struct Record {
    start: Instant,
    request_id: HeaderValue,
    /// The runtime the request started on: its route labels and log switch.
    snap: Arc<Snapshot>,
    method: Method,
    peer: IpAddr,
    /// What the router picked; `None` for a request that matched nothing.
    pub target: Option<Target>,
    /// When the request was handed to the upstream.
    pub upstream_from: Option<Instant>,
    /// The verified token, on a route that checked one.
    pub identity: Option<Arc<Verified>>,
    finished: bool,
}

impl Record {
    /// Starts the clock and settles the request id (set on `req` for the
    /// upstream).
    pub fn begin<B>(
        ids: &RequestIds,
        snap: &Arc<Snapshot>,
        req: &mut Request<B>,
        conn: &ConnInfo,
    ) -> Self {
        let start = Instant::now();
        let method = req.method().clone();
        let headers = req.headers_mut();
        // Room for what wxgate adds on the way (request id, identity,
        // forwarding headers) in one allocation; a kept-alive connection's
        // map already has it.
        headers.reserve(8);
        // The peer first: with no trusted proxy (the common case) the
        // client's header is not even looked up, only replaced.
        let trusted = &snap.config.server.trusted_proxies;
        let kept = (!trusted.is_empty())
            .then(|| crate::http::headers::canonical(conn.peer.ip()))
            .filter(|peer| trusted.iter().any(|net| net.contains(peer)))
            .and_then(|_| headers.get(&X_REQUEST_ID))
            .filter(|id| acceptable_id(id))
            .cloned();
        let request_id = kept.unwrap_or_else(|| ids.next());
        headers.insert(X_REQUEST_ID, request_id.clone());
        Record {
            start,
            request_id,
            snap: snap.clone(),
            method,
            peer: conn.peer.ip(),
            target: None,
            upstream_from: None,
            identity: None,
            finished: false,
        }
    }

    pub fn method(&self) -> &Method {
        &self.method
    }

    /// Counts the request, writes its access-log line and gives the
    /// response its request id. `error` is the code wxgate answered with.
    pub fn finish(
        mut self,
        metrics: &Metrics,
        response: &mut Response<Body>,
        error: Option<&'static str>,
    ) {
        if self.target == Some(Target::Login) {
            metrics.login(error.unwrap_or("ok"));
        }
        self.record(response.status().as_u16(), error, true);
        let id = std::mem::replace(&mut self.request_id, HeaderValue::from_static(""));
        response.headers_mut().insert(X_REQUEST_ID, id);
    }

    fn record(&mut self, status: u16, error: Option<&'static str>, answered: bool) {
        self.finished = true;
        let end = Instant::now();
        let duration = end - self.start;
        let upstream = self
            .upstream_from
            .filter(|_| answered)
            .map(|from| end - from);
        let handles = &self.snap.metrics;
        let route: &RouteMetrics = match self.target {
            None => &handles.none,
            Some(Target::Route(i)) => &handles.routes[i],
            Some(Target::Login) => &handles.login,
            Some(Target::Session) => &handles.session,
            Some(Target::Logout) => &handles.logout,
            Some(Target::Jwks) => &handles.jwks,
            Some(Target::Verify) => &handles.verify,
        };
        route.record(status, duration, upstream);
        if self.snap.config.log.access {
            tracing::info!(
                target: "wxgate::access",
                method = %self.method,
                route = %route.label(),
                status,
                duration_ms = millis(duration),
                upstream_ms = upstream.map(millis),
                openid = self.identity.as_ref().map(|v| display(v.openid_str())),
                error = error.map(display),
                peer = %self.peer,
                request_id = %self.request_id.to_str().unwrap_or_default(),
                "request"
            );
        }
    }
}

impl Drop for Record {
    fn drop(&mut self) {
        if !self.finished {
            self.record(CLIENT_CLOSED, Some("client_closed_request"), false);
        }
    }
}

/// Milliseconds with microsecond precision, for the log.
fn millis(d: Duration) -> f64 {
    d.as_micros() as f64 / 1000.0
}

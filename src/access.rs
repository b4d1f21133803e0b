//! One request's record, from arrival to response head: its request id,
//! the route it matched, its timings and identity; at the end, its metrics
//! and its access-log line (target `wxgate::access`).
//!
//! The request id is a per-process random prefix and a counter: no syscall,
//! no lock. A client's own `X-Request-Id` is kept only from a trusted proxy
//! (`server.trusted_proxies`) and only when it looks like an id; anyone
//! else's is replaced, so ids in the upstream's logs can be believed.

use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use http::header::{HeaderName, HeaderValue};
use http::{Method, Request, Response};

use crate::body::Body;
use crate::gateway::{ConnInfo, Runtime};
use crate::metrics::{Metrics, RouteMetrics};
use crate::router::Target;
use crate::token::Verified;

pub const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The longest client-sent request id that is kept.
pub const MAX_REQUEST_ID_LEN: usize = 128;

/// Makes request ids: `<16 hex digits of process randomness>-<counter in hex>`.
pub struct RequestIds {
    prefix: [u8; 16],
    next: AtomicU64,
}

impl Default for RequestIds {
    fn default() -> Self {
        let mut random = [0u8; 8];
        // Without the OS's randomness, the time still tells processes apart.
        if getrandom::fill(&mut random).is_err() {
            random = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default()
                .as_nanos()
                .to_le_bytes()[..8]
                .try_into()
                .expect("8 bytes");
        }
        let mut prefix = [0u8; 16];
        for (i, b) in random.iter().enumerate() {
            prefix[2 * i] = HEX[usize::from(b >> 4)];
            prefix[2 * i + 1] = HEX[usize::from(b & 15)];
        }
        RequestIds {
            prefix,
            next: AtomicU64::new(1),
        }
    }
}

const HEX: &[u8; 16] = b"0123456789abcdef";

impl RequestIds {
    pub fn next(&self) -> HeaderValue {
        let n = self.next.fetch_add(1, Relaxed);
        let mut buf = [0u8; 16 + 1 + 16];
        buf[..16].copy_from_slice(&self.prefix);
        buf[16] = b'-';
        let digits = (16 - n.leading_zeros() as usize / 4).max(1);
        for i in 0..digits {
            buf[17 + i] = HEX[((n >> (4 * (digits - 1 - i))) & 15) as usize];
        }
        HeaderValue::from_bytes(&buf[..17 + digits]).expect("hex digits")
    }
}

/// Letters, digits and `-_.:+/=@`, 1 to [`MAX_REQUEST_ID_LEN`] of them:
/// UUIDs, hex and base64 ids pass; nothing that could break a log line does.
pub fn acceptable_id(id: &HeaderValue) -> bool {
    let bytes = id.as_bytes();
    (1..=MAX_REQUEST_ID_LEN).contains(&bytes.len())
        && bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.:+/=@".contains(b))
}

/// The status counted and logged for a request whose client went away
/// before its response head was ready (nginx's "client closed request").
pub const CLIENT_CLOSED: u16 = 499;

/// What the gateway learns about one request while serving it. Dropped
/// unfinished (the client closed the connection and hyper dropped the
/// handler), it still counts and logs the request, as [`CLIENT_CLOSED`].
pub struct Exchange {
    start: Instant,
    request_id: HeaderValue,
    /// The runtime the request started on: its route labels and log switch.
    rt: Arc<Runtime>,
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

impl Exchange {
    /// Starts the clock and settles the request id (set on `req` for the
    /// upstream).
    pub fn begin<B>(
        ids: &RequestIds,
        rt: &Arc<Runtime>,
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
        let trusted = &rt.config.server.trusted_proxies;
        let kept = (!trusted.is_empty())
            .then(|| crate::headers::canonical(conn.peer.ip()))
            .filter(|peer| trusted.iter().any(|net| net.contains(peer)))
            .and_then(|_| headers.get(&X_REQUEST_ID))
            .filter(|id| acceptable_id(id))
            .cloned();
        let request_id = kept.unwrap_or_else(|| ids.next());
        headers.insert(X_REQUEST_ID, request_id.clone());
        Exchange {
            start,
            request_id,
            rt: rt.clone(),
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
        let handles = &self.rt.metrics;
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
        if self.rt.config.log.access {
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

impl Drop for Exchange {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_unique_and_acceptable() {
        let ids = RequestIds::default();
        let a = ids.next();
        let b = ids.next();
        assert_ne!(a, b);
        assert!(acceptable_id(&a), "{a:?}");
        assert!(a.to_str().unwrap().ends_with("-1"), "{a:?}");
        ids.next.store(u64::MAX, Relaxed);
        assert!(ids.next().to_str().unwrap().ends_with("-ffffffffffffffff"));
        assert_ne!(RequestIds::default().prefix, ids.prefix);
    }

    #[test]
    fn only_id_like_values_are_acceptable() {
        for ok in ["abc", "3f1c-0a", "dGVzdA==", "a.b:c_d+e/f@g"] {
            assert!(acceptable_id(&HeaderValue::from_static(ok)), "{ok}");
        }
        let long = "a".repeat(MAX_REQUEST_ID_LEN + 1);
        for bad in ["", "a b", "a\"b", "x\ty", long.as_str()] {
            assert!(
                !acceptable_id(&HeaderValue::from_str(bad).unwrap()),
                "{bad:?}"
            );
        }
    }
}

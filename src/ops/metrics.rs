//! The counters behind `GET /metrics`, and their Prometheus text encoding.
//!
//! Hot path first: a request touches only handles resolved when its
//! [`Snapshot`](crate::state::Snapshot) was built ([`RouteHandles`]): a few
//! relaxed atomic adds, no lock, no map lookup, no allocation. Statuses are
//! counted in a fixed slot per common status (a table index, not a hash);
//! only a rare status falls back to a small locked map. Families that only
//! rare paths touch (logins, WeChat errcodes, auth failures) use that map
//! directly.
//!
//! Handles are kept by label (the route's configured `path`) in [`Metrics`]
//! for the life of the process, so a reload that keeps a route keeps its
//! series counting instead of restarting them at 0, which Prometheus would
//! read as a counter reset. A route that a reload removes keeps its last
//! values (a request still in flight on the old config may yet add to them).
//!
//! No crate: `prometheus-client`'s histogram takes a lock per observation
//! and its labelled families are a map behind a lock; what is left, the
//! text format, is the short [`Metrics::encode`] below.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use crate::config::Config;
use crate::error::Error;

/// The `route` label of requests that matched nothing.
pub const NO_ROUTE: &str = "none";

/// Histogram bucket upper bounds, in seconds (and in nanoseconds below).
const BUCKETS: [f64; 16] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    60.0,
];
const BUCKETS_NS: [u64; 16] = {
    let mut ns = [0u64; 16];
    let mut i = 0;
    while i < 16 {
        ns[i] = (BUCKETS[i] * 1e9) as u64;
        i += 1;
    }
    ns
};

/// Statuses with their own counter slot; any other goes to the fallback map.
const COMMON_STATUSES: [u16; 23] = [
    200, 201, 202, 204, 206, 301, 302, 304, 307, 308, 400, 401, 403, 404, 405, 408, 413, 429, 500,
    501, 502, 503, 504,
];
/// Status code → 1 + its index in [`COMMON_STATUSES`], or 0.
const STATUS_SLOT: [u8; 1000] = {
    let mut slots = [0u8; 1000];
    let mut i = 0;
    while i < COMMON_STATUSES.len() {
        slots[COMMON_STATUSES[i] as usize] = i as u8 + 1;
        i += 1;
    }
    slots
};

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A lock-free histogram with fixed buckets: one add to a bucket and one to
/// the sum per observation; counts are made cumulative when encoded.
#[derive(Default)]
pub struct Histogram {
    /// Per bucket, not cumulative; the last one is `+Inf`.
    buckets: [AtomicU64; BUCKETS.len() + 1],
    sum_ns: AtomicU64,
}

impl Histogram {
    pub fn observe(&self, d: Duration) {
        let ns = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        let slot = BUCKETS_NS
            .iter()
            .position(|&b| ns <= b)
            .unwrap_or(BUCKETS.len());
        self.buckets[slot].fetch_add(1, Relaxed);
        self.sum_ns.fetch_add(ns, Relaxed);
    }

    fn encode(&self, out: &mut String, name: &str, labels: &str) {
        let sep = if labels.is_empty() { "" } else { "," };
        let mut count = 0;
        for (i, bucket) in self.buckets.iter().enumerate() {
            count += bucket.load(Relaxed);
            let le = BUCKETS.get(i).map_or("+Inf".to_owned(), f64::to_string);
            let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"{le}\"}} {count}");
        }
        let braces = |l: &str| {
            if l.is_empty() {
                String::new()
            } else {
                format!("{{{l}}}")
            }
        };
        let sum = self.sum_ns.load(Relaxed) as f64 / 1e9;
        let _ = writeln!(out, "{name}_sum{} {sum}", braces(labels));
        let _ = writeln!(out, "{name}_count{} {count}", braces(labels));
    }
}

/// Counters for one `route` label.
pub struct RouteMetrics {
    label: String,
    /// Indexed by [`STATUS_SLOT`]; slot 0 is unused.
    statuses: [AtomicU64; COMMON_STATUSES.len() + 1],
    rare_statuses: Mutex<BTreeMap<u16, u64>>,
    duration: Histogram,
    upstream: Histogram,
}

impl RouteMetrics {
    fn new(label: &str) -> RouteMetrics {
        RouteMetrics {
            label: label.to_owned(),
            statuses: Default::default(),
            rare_statuses: Mutex::default(),
            duration: Histogram::default(),
            upstream: Histogram::default(),
        }
    }

    /// The label: the route's configured path, an endpoint's, or `none`.
    pub fn label(&self) -> &str {
        &self.label
    }

    /// One answered request.
    pub fn record(&self, status: u16, duration: Duration, upstream: Option<Duration>) {
        match STATUS_SLOT.get(usize::from(status)).copied().unwrap_or(0) {
            0 => *lock(&self.rare_statuses).entry(status).or_default() += 1,
            slot => {
                self.statuses[usize::from(slot)].fetch_add(1, Relaxed);
            }
        }
        self.duration.observe(duration);
        if let Some(upstream) = upstream {
            self.upstream.observe(upstream);
        }
    }

    fn statuses(&self) -> Vec<(u16, u64)> {
        let mut all: Vec<(u16, u64)> = COMMON_STATUSES
            .iter()
            .zip(&self.statuses[1..])
            .map(|(&s, n)| (s, n.load(Relaxed)))
            .filter(|&(_, n)| n > 0)
            .collect();
        all.extend(lock(&self.rare_statuses).iter().map(|(&s, &n)| (s, n)));
        all.sort_unstable();
        all
    }
}

/// The handles one runtime uses, resolved when it is built.
pub struct RouteHandles {
    /// By route index, as [`Router::route`](crate::router::Router::route).
    pub routes: Vec<Arc<RouteMetrics>>,
    pub login: Arc<RouteMetrics>,
    pub session: Arc<RouteMetrics>,
    pub logout: Arc<RouteMetrics>,
    pub jwks: Arc<RouteMetrics>,
    pub verify: Arc<RouteMetrics>,
    pub none: Arc<RouteMetrics>,
}

/// At most this many distinct WeChat errcodes get their own label; the rest
/// are counted as `other`, so a misbehaving WeChat cannot grow the output.
const MAX_ERRCODES: usize = 64;

/// Every metric; one per gateway, shared by all runtimes.
pub struct Metrics {
    /// By label. Locked only while a runtime is built and while scraping.
    routes: Mutex<BTreeMap<String, Arc<RouteMetrics>>>,
    auth_failures: Mutex<BTreeMap<&'static str, u64>>,
    logins: Mutex<BTreeMap<&'static str, u64>>,
    wechat_errcodes: Mutex<BTreeMap<String, u64>>,
    wechat_duration: Histogram,
    connections_open: AtomicI64,
    reloads_ok: AtomicU64,
    reloads_error: AtomicU64,
    /// Unix seconds of the last successful load (start-up or reload).
    last_reload_ok: AtomicU64,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            routes: Mutex::default(),
            auth_failures: Mutex::default(),
            logins: Mutex::default(),
            wechat_errcodes: Mutex::default(),
            wechat_duration: Histogram::default(),
            connections_open: AtomicI64::new(0),
            reloads_ok: AtomicU64::new(0),
            reloads_error: AtomicU64::new(0),
            last_reload_ok: AtomicU64::new(crate::auth::token::now()),
        }
    }
}

/// Decrements `wxgate_connections_open` when the connection ends.
pub struct OpenConnection(Arc<Metrics>);

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.0.connections_open.fetch_sub(1, Relaxed);
    }
}

impl Metrics {
    /// The handles for `config`'s routes and endpoints: existing ones for
    /// labels already known, so that their series carry on.
    pub fn handles(&self, config: &Config) -> RouteHandles {
        let mut known = lock(&self.routes);
        let mut get = |label: &str| {
            known
                .entry(label.to_owned())
                .or_insert_with(|| Arc::new(RouteMetrics::new(label)))
                .clone()
        };
        RouteHandles {
            routes: config.routes.iter().map(|r| get(&r.path)).collect(),
            login: get(&config.auth.login_path),
            session: get(&config.auth.session_path),
            logout: get(&config.auth.logout_path),
            jwks: get(&config.auth.jwks_path),
            verify: get(&config.auth.verify_path),
            none: get(NO_ROUTE),
        }
    }

    /// A refused token (`missing_token`, `invalid_token`, ...): not the
    /// common case, so a locked map is fine.
    pub fn auth_failure(&self, error: &Error) {
        if matches!(error, Error::MissingToken | Error::Token(_)) {
            *lock(&self.auth_failures).entry(error.code()).or_default() += 1;
        }
    }

    /// One answered login: `ok`, or the error code.
    pub fn login(&self, outcome: &'static str) {
        *lock(&self.logins).entry(outcome).or_default() += 1;
    }

    /// One call to WeChat's code2session; `errcode` when it answered one.
    pub fn wechat_call(&self, elapsed: Duration, errcode: Option<i64>) {
        self.wechat_duration.observe(elapsed);
        if let Some(code) = errcode {
            let mut codes = lock(&self.wechat_errcodes);
            let label = code.to_string();
            let label = if codes.contains_key(&label) || codes.len() < MAX_ERRCODES {
                label
            } else {
                "other".to_owned()
            };
            *codes.entry(label).or_default() += 1;
        }
    }

    /// Counts a connection until the returned guard is dropped.
    pub fn connection_opened(self: &Arc<Self>) -> OpenConnection {
        self.connections_open.fetch_add(1, Relaxed);
        OpenConnection(self.clone())
    }

    pub fn count_reload(&self, ok: bool) {
        if ok {
            self.reloads_ok.fetch_add(1, Relaxed);
            self.last_reload_ok
                .store(crate::auth::token::now(), Relaxed);
        } else {
            self.reloads_error.fetch_add(1, Relaxed);
        }
    }

    /// Every family in the Prometheus text format (version 0.0.4).
    pub fn encode(&self) -> String {
        let mut out = String::with_capacity(8192);
        let routes: Vec<Arc<RouteMetrics>> = lock(&self.routes).values().cloned().collect();

        header(
            &mut out,
            "wxgate_requests_total",
            "counter",
            "Requests answered, by route (configured path) and status.",
        );
        for r in &routes {
            let route = escape(&r.label);
            for (status, n) in r.statuses() {
                let _ = writeln!(
                    out,
                    "wxgate_requests_total{{route=\"{route}\",status=\"{status}\"}} {n}"
                );
            }
        }
        for (name, help, pick) in [
            (
                "wxgate_request_duration_seconds",
                "Time from a request's arrival to its response head, by route.",
                (|r: &RouteMetrics| &r.duration) as fn(&RouteMetrics) -> &Histogram,
            ),
            (
                "wxgate_upstream_duration_seconds",
                "Time the upstream took to answer with a response head, by route.",
                |r: &RouteMetrics| &r.upstream,
            ),
        ] {
            header(&mut out, name, "histogram", help);
            for r in &routes {
                let h = pick(r);
                if h.buckets.iter().any(|b| b.load(Relaxed) > 0) {
                    h.encode(&mut out, name, &format!("route=\"{}\"", escape(&r.label)));
                }
            }
        }
        labelled(
            &mut out,
            "wxgate_auth_failures_total",
            "Refused tokens, by reason (the error code).",
            "reason",
            lock(&self.auth_failures).iter().map(|(k, v)| (*k, *v)),
        );
        labelled(
            &mut out,
            "wxgate_logins_total",
            "Answered logins, by outcome (ok or the error code).",
            "outcome",
            lock(&self.logins).iter().map(|(k, v)| (*k, *v)),
        );
        labelled(
            &mut out,
            "wxgate_wechat_errcodes_total",
            "Errcodes WeChat answered to code2session.",
            "errcode",
            lock(&self.wechat_errcodes)
                .iter()
                .map(|(k, v)| (k.as_str(), *v)),
        );
        header(
            &mut out,
            "wxgate_wechat_duration_seconds",
            "histogram",
            "Duration of code2session calls to WeChat.",
        );
        self.wechat_duration
            .encode(&mut out, "wxgate_wechat_duration_seconds", "");
        header(
            &mut out,
            "wxgate_connections_open",
            "gauge",
            "Client connections open on the main listener.",
        );
        let open = self.connections_open.load(Relaxed);
        let _ = writeln!(out, "wxgate_connections_open {open}");
        labelled(
            &mut out,
            "wxgate_config_reloads_total",
            "Config reloads, by result.",
            "result",
            [
                ("ok", self.reloads_ok.load(Relaxed)),
                ("error", self.reloads_error.load(Relaxed)),
            ]
            .into_iter(),
        );
        header(
            &mut out,
            "wxgate_config_last_reload_success_timestamp_seconds",
            "gauge",
            "When the config in force was loaded (Unix time).",
        );
        let last = self.last_reload_ok.load(Relaxed);
        let _ = writeln!(
            out,
            "wxgate_config_last_reload_success_timestamp_seconds {last}"
        );
        header(
            &mut out,
            "wxgate_build_info",
            "gauge",
            "Always 1; the version is in the label.",
        );
        let version = env!("CARGO_PKG_VERSION");
        let _ = writeln!(out, "wxgate_build_info{{version=\"{version}\"}} 1");
        out
    }
}

fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

fn labelled<'a>(
    out: &mut String,
    name: &str,
    help: &str,
    label: &str,
    values: impl Iterator<Item = (&'a str, u64)>,
) {
    header(out, name, "counter", help);
    for (value, n) in values {
        let _ = writeln!(out, "{name}{{{label}=\"{}\"}} {n}", escape(value));
    }
}

/// A label value as the text format wants it.
fn escape(value: &str) -> String {
    value
        .replace('\\', r"\\")
        .replace('"', r#"\""#)
        .replace('\n', r"\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_are_cumulative() {
        let h = Histogram::default();
        h.observe(Duration::from_micros(100));
        h.observe(Duration::from_millis(3));
        h.observe(Duration::from_secs(100));
        let mut out = String::new();
        h.encode(&mut out, "h", "route=\"/a\"");
        assert!(
            out.contains("h_bucket{route=\"/a\",le=\"0.0005\"} 1\n"),
            "{out}"
        );
        assert!(
            out.contains("h_bucket{route=\"/a\",le=\"0.005\"} 2\n"),
            "{out}"
        );
        assert!(
            out.contains("h_bucket{route=\"/a\",le=\"60\"} 2\n"),
            "{out}"
        );
        assert!(
            out.contains("h_bucket{route=\"/a\",le=\"+Inf\"} 3\n"),
            "{out}"
        );
        assert!(out.contains("h_count{route=\"/a\"} 3\n"), "{out}");
        assert!(out.contains("h_sum{route=\"/a\"} 100.0031\n"), "{out}");
    }

    #[test]
    fn common_and_rare_statuses() {
        let r = RouteMetrics::new("/a");
        for status in [200, 200, 404, 299, 999, 0] {
            r.record(status, Duration::ZERO, None);
        }
        assert_eq!(
            r.statuses(),
            vec![(0, 1), (200, 2), (299, 1), (404, 1), (999, 1)]
        );
    }

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(escape(r#"/a"b\c"#), r#"/a\"b\\c"#);
    }
}

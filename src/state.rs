//! The gateway's state: the [`Gateway`] handle and the [`Snapshot`] of the
//! config in force.
//!
//! [`Gateway`] is a cheap-clone handle. What a config file determines lives in
//! a [`Snapshot`] behind an `ArcSwap`: each request takes the snapshot current
//! when it starts and keeps it to the end, and a reload swaps in a new one
//! without a lock. What outlives a config (the session store, the upstream
//! connection pool, logins in flight) lives beside it.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use futures_util::future::{BoxFuture, Shared};
use http::header::{self, HeaderValue};

use crate::auth::token::Keys;
use crate::config::{Config, IdentityConfig};
use crate::error::Error;
use crate::http::headers::{StripRule, X_REAL_IP};
use crate::http::request_id::RequestIds;
use crate::login::ratelimit::RateLimiter;
use crate::ops::metrics::{Metrics, RouteHandles};
use crate::ops::openid_log::OpenidLog;
use crate::router::Router;
use crate::store::{CodeOutcome, Store};
use crate::upstream::pool::Pools;
use crate::upstream::Reach;
use crate::wechat::access_token::Tokens;
use crate::wechat::WeChat;

/// Everything derived from one version of the config file.
pub struct Snapshot {
    pub config: Config,
    pub router: Router,
    pub keys: Keys,
    /// Shared with request bodies, which filter trailers with it.
    pub identity: Arc<IdentityConfig>,
    /// `None` when `[dev] simulate_wechat` answers logins locally.
    pub wechat: Option<WeChat>,
    /// The same client for the internal API, which has no simulation.
    pub wechat_api: WeChat,
    /// Carried over by a reload that keeps the same limit, so a SIGHUP
    /// does not hand every client a fresh budget.
    pub login_limiter: Option<Arc<RateLimiter>>,
    /// Metric handles for this config's routes, resolved once.
    pub metrics: RouteHandles,
    /// By route index: how the route reaches its upstream.
    pub upstreams: Vec<Reach>,
    /// By route index, then peer (trusted proxy, other): what a client may
    /// not send on, in a request's head or its trailers.
    pub strip: Vec<[Arc<StripRule>; 2]>,
    /// How log lines show openids. `[log]` is read at start-up only, so a
    /// reload carries it over, and a hashed log keeps its random key.
    pub openid_log: Arc<OpenidLog>,
}

impl Snapshot {
    /// `previous` is the runtime being replaced, if any.
    pub fn new(
        config: Config,
        previous: Option<&Snapshot>,
        metrics: &Metrics,
        pools: &Pools,
    ) -> Result<Snapshot, String> {
        let login_limiter = config.auth.login_rate_limit.map(|limit| {
            previous
                .and_then(|p| p.login_limiter.clone())
                .filter(|l| l.limit() == limit)
                .unwrap_or_else(|| Arc::new(RateLimiter::new(limit)))
        });
        let keys =
            Keys::new(&config.token, config.appids()).count_cache_in(metrics.token_cache().clone());
        let router = Router::new(config.routes.clone(), &config.auth);
        let strip = config
            .routes
            .iter()
            .map(|route| {
                // `Expect: 100-continue` is answered by wxgate itself; a
                // token stays unless the route forwards it; client-address
                // headers wxgate ignores from untrusted peers, and so must
                // an upstream that might believe them.
                let mut also = vec![header::EXPECT];
                if !route.forward_token {
                    also.push(config.auth.token_header.name());
                }
                let trusted = StripRule::new(config.identity.clone(), also.clone());
                also.extend([X_REAL_IP, header::FORWARDED]);
                let untrusted = StripRule::new(config.identity.clone(), also);
                [Arc::new(trusted), Arc::new(untrusted)]
            })
            .collect();
        let wechat_api = WeChat::new(&config.wechat)?;
        let wechat = (!config.dev.simulate_wechat).then(|| wechat_api.clone());
        let openid_log = match previous {
            Some(p) => p.openid_log.clone(),
            None => Arc::new(OpenidLog::new(&config.log.openid)?),
        };
        Ok(Snapshot {
            openid_log,
            metrics: metrics.handles(&config),
            upstreams: Reach::all(&config, pools)?,
            strip,
            identity: Arc::new(config.identity.clone()),
            login_limiter,
            router,
            keys,
            wechat,
            wechat_api,
            config,
        })
    }
}

/// A login exchange in flight, awaited by every request with the same code.
pub(crate) type InFlight = Shared<BoxFuture<'static, Result<CodeOutcome, Error>>>;

/// The connection a request arrived on.
#[derive(Debug, Clone)]
pub struct ConnInfo {
    pub peer: SocketAddr,
    /// The peer's IP as a header value, built once per connection for
    /// `X-Forwarded-For`.
    pub peer_ip: HeaderValue,
    /// "http" or "https", for `X-Forwarded-Proto`.
    pub proto: &'static str,
    /// The connection's slot under `server.max_connections`, shared so that
    /// a WebSocket tunnel, which outlives hyper's connection, keeps it.
    pub slot: Option<Arc<tokio::sync::OwnedSemaphorePermit>>,
    /// HTTP/1: the connection's driver, which times a request's wait for
    /// its upstream (the request is polled in the driver's own task).
    /// `None` over HTTP/2, whose requests run in tasks of their own.
    pub clock: Option<Arc<crate::server::deadlines::Activity>>,
}

impl ConnInfo {
    pub fn new(peer: SocketAddr, proto: &'static str) -> ConnInfo {
        let ip = crate::http::headers::canonical(peer.ip());
        ConnInfo {
            peer,
            peer_ip: ip_header(ip),
            proto,
            slot: None,
            clock: None,
        }
    }
}

/// An IP address as header text. IPv4 without `fmt`, whose machinery
/// costs more than the rest of setting up a connection's request state.
fn ip_header(ip: std::net::IpAddr) -> HeaderValue {
    let std::net::IpAddr::V4(v4) = ip else {
        return HeaderValue::from_str(&ip.to_string()).expect("an IP is header text");
    };
    let mut text = [0u8; 15];
    let mut len = 0;
    for (i, octet) in v4.octets().into_iter().enumerate() {
        if i > 0 {
            text[len] = b'.';
            len += 1;
        }
        let digits = [octet / 100, octet / 10 % 10, octet % 10];
        let skip = match octet {
            100.. => 0,
            10.. => 1,
            _ => 2,
        };
        for d in &digits[skip..] {
            text[len] = b'0' + d;
            len += 1;
        }
    }
    HeaderValue::from_bytes(&text[..len]).expect("digits and dots")
}

#[derive(Clone)]
pub struct Gateway {
    inner: Arc<Inner>,
}

struct Inner {
    snapshot: ArcSwap<Snapshot>,
    store: Store,
    /// Outlive configs, so a reload keeps warm upstream connections.
    pools: Pools,
    /// Logins in flight by (appid, code). A std mutex: held only to look up or
    /// insert, never across an await, and only on the login path.
    logins: Mutex<HashMap<(String, String), InFlight>>,
    draining: AtomicBool,
    metrics: Arc<Metrics>,
    request_ids: RequestIds,
    /// Each app's WeChat access_token, lent by the internal API; outlives
    /// configs (a reload that changes an app's secret drops its token).
    tokens: Tokens,
}

impl Gateway {
    pub fn new(config: Config) -> Result<Gateway, String> {
        let store = Store::new(&config.store)?;
        store.note_leeway(config.token.leeway);
        let pools = Pools::new(crate::upstream::connect_timeout(&config));
        let metrics = Arc::new(Metrics::default());
        Ok(Gateway {
            inner: Arc::new(Inner {
                snapshot: ArcSwap::from_pointee(Snapshot::new(config, None, &metrics, &pools)?),
                store,
                pools,
                logins: Mutex::new(HashMap::new()),
                draining: AtomicBool::new(false),
                tokens: Tokens::new(metrics.clone()),
                metrics,
                request_ids: RequestIds::default(),
            }),
        })
    }

    /// The runtime in force now.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.inner.snapshot.load_full()
    }

    pub(crate) fn request_ids(&self) -> &RequestIds {
        &self.inner.request_ids
    }

    /// Puts `config` in force for every request that starts from now on.
    pub fn install(&self, config: Config) -> Result<(), String> {
        // Before the new leeway admits anything: revocations outlive it.
        self.inner.store.note_leeway(config.token.leeway);
        let next = Snapshot::new(
            config,
            Some(&self.snapshot()),
            &self.inner.metrics,
            &self.inner.pools,
        )?;
        self.inner.snapshot.store(Arc::new(next));
        Ok(())
    }

    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.inner.metrics
    }

    pub fn store(&self) -> &Store {
        &self.inner.store
    }

    pub fn tokens(&self) -> &Tokens {
        &self.inner.tokens
    }

    pub(crate) fn logins(&self) -> &Mutex<HashMap<(String, String), InFlight>> {
        &self.inner.logins
    }

    pub fn set_draining(&self) {
        self.inner.draining.store(true, Ordering::Relaxed);
    }

    pub fn is_draining(&self) -> bool {
        self.inner.draining.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn config(leeway: &str) -> Config {
        let text = format!(
            "[server]\nlisten = \"127.0.0.1:0\"\n[[apps]]\nappid = \"wx1\"\nsecret = \"s\"\n\
             [token]\nleeway = \"{leeway}\"\n[[token.keys]]\nid = \"k1\"\n\
             secret = \"0123456789abcdef0123456789abcdef\"\n"
        );
        Config::parse(&text, std::path::Path::new("t.toml")).unwrap()
    }

    /// A reload that raises `token.leeway` lets tokens pass longer past
    /// `exp`: their revocations must be kept as long (issue 16).
    #[tokio::test]
    async fn a_reload_that_raises_the_leeway_keeps_revocations_longer() {
        let gw = Gateway::new(config("30s")).unwrap();
        let exp = crate::auth::token::now() - 120;
        let store = gw.store();
        store
            .end_session("wx1", "o1", "j-before", exp)
            .await
            .unwrap();
        assert!(!store.is_revoked("j-before").unwrap(), "past exp + 30 s");
        gw.install(config("10m")).unwrap();
        store
            .end_session("wx1", "o1", "j-after", exp)
            .await
            .unwrap();
        assert!(store.is_revoked("j-after").unwrap(), "within exp + 10 min");
        // Lowered again: what the larger leeway admitted stays covered.
        gw.install(config("30s")).unwrap();
        store
            .end_session("wx1", "o1", "j-lowered", exp)
            .await
            .unwrap();
        assert!(store.is_revoked("j-lowered").unwrap());
    }

    proptest! {
        #[test]
        fn ip_header_is_the_ips_text(v4 in any::<u32>(), v6 in any::<u128>()) {
            for ip in [
                std::net::IpAddr::from(std::net::Ipv4Addr::from(v4)),
                std::net::IpAddr::from(std::net::Ipv6Addr::from(v6)),
            ] {
                let header = ip_header(ip);
                prop_assert_eq!(header.to_str().unwrap(), ip.to_string());
            }
        }
    }

    #[test]
    fn ip_header_edges() {
        for text in ["0.0.0.0", "255.255.255.255", "10.0.100.9", "::1"] {
            let ip: std::net::IpAddr = text.parse().unwrap();
            assert_eq!(ip_header(ip).to_str().unwrap(), text);
        }
    }
}

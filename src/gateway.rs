//! The gateway's state and the path of one request through it.
//!
//! [`Gateway`] is a cheap-clone handle. What a config file determines lives in
//! a [`Runtime`] behind an `ArcSwap`: each request takes the runtime current
//! when it starts and keeps it to the end, and a reload swaps in a new one
//! without a lock. What outlives a config (the session store, the upstream
//! connection pool, logins in flight) lives beside it.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use futures_util::future::{BoxFuture, Shared};
use http::{HeaderValue, Method, Request, Response, Version};
use hyper::body::Incoming;

use crate::access::{Exchange, RequestIds};
use crate::auth;
use crate::body::Body;
use crate::config::{strip_port, Config, IdentityConfig};
use crate::error::Error;
use crate::forward_auth;
use crate::login;
use crate::metrics::{Metrics, RouteHandles};
use crate::path;
use crate::pool::{HostPool, Pools};
use crate::proxy;
use crate::ratelimit::RateLimiter;
use crate::router::{check_method, upstream_path_and_query, Router, Target};
use crate::store::{CodeOutcome, Store};
use crate::token::Keys;
use crate::upstream_tls::HttpsClients;
use crate::wechat::WeChat;

/// Everything derived from one version of the config file.
pub struct Runtime {
    pub config: Config,
    pub router: Router,
    pub keys: Keys,
    /// Shared with request bodies, which filter trailers with it.
    pub identity: Arc<IdentityConfig>,
    /// `None` when `[dev] simulate_wechat` answers logins locally.
    pub wechat: Option<WeChat>,
    /// Carried over by a reload that keeps the same limit, so a SIGHUP
    /// does not hand every client a fresh budget.
    pub login_limiter: Option<Arc<RateLimiter>>,
    /// Metric handles for this config's routes, resolved once.
    pub metrics: RouteHandles,
    /// Clients for `https://` upstreams, built from this config's trust roots.
    pub https: HttpsClients,
    /// By route index: the connection pool of an `http://` upstream.
    pub pools: Vec<Option<Arc<HostPool>>>,
}

impl Runtime {
    /// `previous` is the runtime being replaced, if any.
    pub fn new(
        config: Config,
        previous: Option<&Runtime>,
        metrics: &Metrics,
        pools: &Pools,
    ) -> Result<Runtime, String> {
        let login_limiter = config.auth.login_rate_limit.map(|limit| {
            previous
                .and_then(|p| p.login_limiter.clone())
                .filter(|l| l.limit() == limit)
                .unwrap_or_else(|| Arc::new(RateLimiter::new(limit)))
        });
        let keys = Keys::new(&config.token, config.appids());
        let router = Router::new(config.routes.clone(), &config.auth);
        let pools = config
            .routes
            .iter()
            .map(|r| {
                (r.upstream.scheme == http::uri::Scheme::HTTP)
                    .then(|| pools.get(&r.upstream.authority))
            })
            .collect();
        let wechat = if config.dev.simulate_wechat {
            None
        } else {
            Some(WeChat::new(&config.wechat)?)
        };
        Ok(Runtime {
            metrics: metrics.handles(&config),
            https: HttpsClients::new(&config)?,
            pools,
            identity: Arc::new(config.identity.clone()),
            login_limiter,
            router,
            keys,
            wechat,
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
    pub clock: Option<Arc<crate::bounds::Activity>>,
}

impl ConnInfo {
    pub fn new(peer: SocketAddr, proto: &'static str) -> ConnInfo {
        let ip = crate::headers::canonical(peer.ip());
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
    runtime: ArcSwap<Runtime>,
    store: Store,
    /// Outlive configs, so a reload keeps warm upstream connections.
    pools: Pools,
    /// Logins in flight by (appid, code). A std mutex: held only to look up or
    /// insert, never across an await, and only on the login path.
    logins: Mutex<HashMap<(String, String), InFlight>>,
    draining: AtomicBool,
    metrics: Arc<Metrics>,
    request_ids: RequestIds,
}

impl Gateway {
    pub fn new(config: Config) -> Result<Gateway, String> {
        let store = Store::new(&config.store)?;
        store.note_leeway(config.token.leeway);
        let pools = Pools::new(proxy::connect_timeout(&config));
        let metrics = Arc::new(Metrics::default());
        Ok(Gateway {
            inner: Arc::new(Inner {
                runtime: ArcSwap::from_pointee(Runtime::new(config, None, &metrics, &pools)?),
                store,
                pools,
                logins: Mutex::new(HashMap::new()),
                draining: AtomicBool::new(false),
                metrics,
                request_ids: RequestIds::default(),
            }),
        })
    }

    /// The runtime in force now.
    pub fn runtime(&self) -> Arc<Runtime> {
        self.inner.runtime.load_full()
    }

    /// Puts `config` in force for every request that starts from now on.
    pub fn reload(&self, config: Config) -> Result<(), String> {
        // Before the new leeway admits anything: revocations outlive it.
        self.inner.store.note_leeway(config.token.leeway);
        let next = Runtime::new(
            config,
            Some(&self.runtime()),
            &self.inner.metrics,
            &self.inner.pools,
        )?;
        self.inner.runtime.store(Arc::new(next));
        Ok(())
    }

    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.inner.metrics
    }

    pub fn store(&self) -> &Store {
        &self.inner.store
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

    /// Serves one request; every failure becomes its JSON error answer.
    pub async fn handle(&self, mut req: Request<Incoming>, conn: ConnInfo) -> Response<Body> {
        let runtime = self.runtime();
        let mut exchange = Exchange::begin(&self.inner.request_ids, &runtime, &mut req, &conn);
        let (mut response, error) = match self.serve(&runtime, req, &conn, &mut exchange).await {
            Ok(response) => (response, None),
            Err(error) => {
                let method = exchange.method();
                tracing::debug!(%method, peer = %conn.peer, error = error.code(), "request refused");
                self.metrics().auth_failure(&error);
                let code = error.code();
                (error.into_response(), Some(code))
            }
        };
        exchange.finish(self.metrics(), &mut response, error);
        response
    }

    async fn serve(
        &self,
        rt: &Arc<Runtime>,
        req: Request<Incoming>,
        conn: &ConnInfo,
        exchange: &mut Exchange,
    ) -> Result<Response<Body>, Error> {
        if req.method() == Method::CONNECT {
            return Err(Error::Connect);
        }
        let (parts, body) = req.into_parts();
        let absolute_form = parts.version <= Version::HTTP_11 && parts.uri.authority().is_some();
        if absolute_form && !serves_authority(rt, parts.uri.authority().expect("checked")) {
            return Err(Error::InvalidRequest(
                "the request target names a host wxgate does not serve",
            ));
        }
        let path =
            path::normalize(parts.uri.path()).map_err(|e| Error::InvalidRequest(e.reason()))?;
        let host = request_host(&parts)?;
        let target = rt.router.find(host, &path).ok_or(Error::NotFound)?;
        exchange.target = Some(target);
        // wxgate's own endpoints are boxed: their futures (a WeChat call in
        // flight, say) would otherwise make every proxied request's future,
        // which hyper moves and stores, as large as the largest of them.
        let index = match target {
            Target::Login => return Box::pin(login::login(self, rt, parts, body, conn)).await,
            Target::Session => return Box::pin(login::session(self, rt, &parts)).await,
            Target::Logout => return Box::pin(login::logout(self, rt, &parts)).await,
            Target::Jwks => return crate::jwks::serve(rt, &parts.method),
            Target::Verify => {
                return Box::pin(forward_auth::verify(self, rt, &parts, &path, conn)).await
            }
            Target::Route(index) => index,
        };
        let route = rt.router.route(index);
        check_method(route, &parts.method)?;
        let identity = auth::check_route(rt, self.store(), route, &parts.headers).await?;
        let upstream_target = upstream_path_and_query(route, &path, parts.uri.query());
        exchange.identity.clone_from(&identity);
        exchange.upstream_from = Some(std::time::Instant::now());
        proxy::forward(rt, index, parts, body, upstream_target, conn, identity).await
    }
}

/// The host a request is for, without port: the absolute-form authority or
/// HTTP/2 `:authority` if present, else `Host`. Two `Host` headers are 400
/// (RFC 9112 §3.2): host routes and the upstream could each pick another.
pub(crate) fn request_host(parts: &http::request::Parts) -> Result<Option<&str>, Error> {
    let mut hosts = parts.headers.get_all(http::header::HOST).iter();
    let host_header = hosts.next();
    if hosts.next().is_some() {
        return Err(Error::InvalidRequest("more than one Host header"));
    }
    Ok(parts
        .uri
        .host()
        .or_else(|| host_header?.to_str().ok())
        .map(strip_port))
}

/// An absolute-form target must name a route's host or wxgate's own address.
fn serves_authority(rt: &Runtime, authority: &http::uri::Authority) -> bool {
    let host = authority.host();
    if rt.router.serves_host(host) {
        return true;
    }
    let listen = rt.config.server.listen;
    let port = authority.port_u16().unwrap_or(match rt.config.server.tls {
        Some(_) => 443,
        None => 80,
    });
    let host_ip = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .parse::<std::net::IpAddr>()
        .ok();
    port == listen.port() && (listen.ip().is_unspecified() || host_ip == Some(listen.ip()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

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

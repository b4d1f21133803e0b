//! Forwarding: rewrite the request for the upstream, send it on a pooled
//! connection ([`crate::upstream::pool`] for `http://`, hyper-util's client with
//! rustls for `https://`), stream the answer back. WebSocket upgrades are
//! spliced after the route's auth check. Bodies are never collected.

use std::sync::Arc;
use std::time::Duration;

use http::header::{self, HeaderMap, HeaderValue};
use http::uri::{PathAndQuery, Uri};
use http::{Request, Response, StatusCode, Version};
use http_body::Body as _;
use hyper::body::Incoming;
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;

use crate::auth;
use crate::auth::token::Verified;
use crate::error::Error;
use crate::http::body::Body;
use crate::http::headers;
use crate::server::deadlines::Within;
use crate::state::{ConnInfo, Snapshot};
use crate::upstream::pool::Outgoing;

/// Forwards a request that passed route `index`'s checks.
pub async fn forward(
    snap: &Arc<Snapshot>,
    index: usize,
    mut parts: http::request::Parts,
    body: Incoming,
    target: String,
    conn: &ConnInfo,
    verified: Option<Arc<Verified>>,
) -> Result<Response<Body>, Error> {
    let route = snap.router.route(index);
    let present = headers::HopByHop::of(&parts.headers);
    let upgrade = present.upgrade.then(|| websocket_upgrade(&parts)).flatten();
    let client_upgrade = upgrade
        .as_ref()
        .and_then(|_| parts.extensions.remove::<OnUpgrade>());
    let wants_trailers = present.te
        && parts.headers.get_all(header::TE).iter().any(|v| {
            v.to_str().is_ok_and(|v| {
                v.split(',')
                    .any(|t| t.trim().eq_ignore_ascii_case("trailers"))
            })
        });
    // The host the request was routed on: an absolute-form or HTTP/2
    // authority wins over `Host` (RFC 9112 §3.2.2, RFC 9113 §8.3.1), so the
    // upstream never hears of a host other than the one that was judged.
    let authority = parts
        .uri
        .authority()
        .and_then(|a| HeaderValue::from_str(a.as_str()).ok());

    let h = &mut parts.headers;
    // (`insert` hands back the client's `Host`.)
    let client_host = h.insert(header::HOST, route.upstream.host_header.clone());
    let original_host = authority.or(client_host);
    // wxgate answered (or will answer) `Expect: 100-continue` itself. Other
    // client-address headers: wxgate ignores them from untrusted peers, and
    // so must an upstream that might believe them.
    let untrusted = !headers::is_trusted(conn.peer.ip(), &snap.config.server.trusted_proxies);
    // (A forwarded token leaves its slot to `Expect` again.)
    let token = match route.forward_token {
        true => header::EXPECT,
        false => snap.config.auth.token_header.name(),
    };
    let also = [header::EXPECT, token, headers::X_REAL_IP, header::FORWARDED];
    let also = if untrusted { &also[..] } else { &also[..2] };
    headers::strip_request_headers(h, &snap.identity, also);
    if let Some(who) = &verified {
        auth::inject_identity(h, who, &snap.identity);
    }
    headers::set_forwarded(h, &conn.peer_ip, conn.proto, original_host);
    if let Some(protocol) = &upgrade {
        h.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        h.insert(header::UPGRADE, protocol.clone());
    }
    if wants_trailers {
        h.insert(header::TE, HeaderValue::from_static("trailers"));
    }

    let target =
        PathAndQuery::try_from(target).map_err(|_| Error::InvalidRequest("bad request target"))?;
    let failed = |e: &(dyn std::error::Error + 'static), connect: bool| {
        let cause = root_cause(e);
        tracing::warn!(upstream = %route.upstream, error = %e, %cause, connect, "upstream failed");
        Error::UpstreamUnavailable
    };
    let pool = snap.pools[index].as_ref();
    // Most requests: written and read by this task (see `pool::exchange`).
    let body = match (pool, &upgrade) {
        (Some(pool), None) => match known_length(&parts.headers, body) {
            Ok(body) => {
                let out = Outgoing {
                    method: &parts.method,
                    target: target.as_str(),
                    headers: &parts.headers,
                    body,
                };
                let answer = match within(conn, route.timeout, pool.exchange(out)).await {
                    None => return Err(Error::UpstreamTimeout),
                    Some(Err(e)) => return Err(failed(&e, e.is_connect())),
                    Some(Ok(answer)) => answer,
                };
                return Ok(answer.map(Body::Direct));
            }
            Err(body) => body,
        },
        _ => body,
    };
    parts.version = Version::HTTP_11;
    // The pool writes the origin-form target as it is; hyper-util's client
    // wants the whole URL.
    parts.uri = match pool {
        Some(_) => Uri::from(target),
        None => Uri::builder()
            .scheme(route.upstream.scheme.clone())
            .authority(route.upstream.authority.clone())
            .path_and_query(target)
            .build()
            .map_err(|_| Error::InvalidRequest("bad request target"))?,
    };
    let request = Request::from_parts(parts, Body::Request(body, snap.identity.clone()));

    let (mut response, lease) = match pool {
        Some(pool) => match within(conn, route.timeout, pool.send(request)).await {
            None => return Err(Error::UpstreamTimeout),
            Some(Err(e)) => return Err(failed(&e, e.is_connect())),
            Some(Ok((response, lease))) => (response, Some(lease)),
        },
        None => {
            let https = snap
                .https
                .get(&route.upstream)
                .expect("a route without a pool is https://, with a client");
            match within(conn, route.timeout, https.request(request)).await {
                None => return Err(Error::UpstreamTimeout),
                Some(Err(e)) => return Err(failed(&e, e.is_connect())),
                Some(Ok(response)) => (response, None),
            }
        }
    };

    if response.status() == StatusCode::SWITCHING_PROTOCOLS {
        let (Some(client_upgrade), Some(_)) = (client_upgrade, &upgrade) else {
            return Err(Error::UpstreamUnavailable);
        };
        let upstream_upgrade = hyper::upgrade::on(&mut response);
        // The tunnel holds the connection's slot until it closes.
        let slot = conn.slot.clone();
        let idle = snap.config.server.idle_timeout;
        tokio::spawn(async move {
            let _slot = slot;
            match tokio::try_join!(client_upgrade, upstream_upgrade) {
                Ok((client, upstream)) => {
                    crate::upstream::tunnel::splice(
                        TokioIo::new(client),
                        TokioIo::new(upstream),
                        idle,
                    )
                    .await;
                }
                Err(e) => tracing::debug!(error = %e, "upgrade failed"),
            }
        });
        let (mut parts, _) = response.into_parts();
        let protocol = parts.headers.get(header::UPGRADE).cloned();
        headers::strip_response_headers(&mut parts.headers);
        parts
            .headers
            .insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        if let Some(protocol) = protocol {
            parts.headers.insert(header::UPGRADE, protocol);
        }
        return Ok(Response::from_parts(parts, Body::empty()));
    }

    let (mut parts, body) = response.into_parts();
    headers::strip_response_headers(&mut parts.headers);
    Ok(Response::from_parts(parts, Body::upstream(body, lease)))
}

/// The most of a request body [`crate::upstream::pool::HostPool::exchange`] sends:
/// one that fits the socket's buffers is written before the answer can
/// come. A larger one goes through hyper's client, which reads an early
/// answer (a 413, say) while it is still sending.
const DIRECT_BODY_MAX: u64 = 64 * 1024;

/// The body as [`crate::upstream::pool::HostPool::exchange`] sends it: `Ok(None)`
/// when there is none, `Ok(Some(..))` when it is small and of a known
/// length that `Content-Length` states, `Err` otherwise (hyper's client
/// then frames it).
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

/// `wait` if it ends within `timeout` (see [`Within`]).
fn within<F: std::future::Future>(conn: &ConnInfo, timeout: Duration, wait: F) -> Within<'_, F> {
    let at = tokio::time::Instant::now() + timeout;
    Within::new(conn.clock.as_deref(), at, wait)
}

/// The protocol a client asks to upgrade to: HTTP/1.1 `Upgrade: websocket`
/// with `Connection: upgrade`. Anything else (`h2c`, say) is not upgraded.
fn websocket_upgrade(parts: &http::request::Parts) -> Option<HeaderValue> {
    let protocol = parts.headers.get(header::UPGRADE)?;
    if parts.version != Version::HTTP_11 {
        return None;
    }
    let connection_upgrade = parts.headers.get_all(header::CONNECTION).iter().any(|v| {
        v.to_str().is_ok_and(|v| {
            v.split(',')
                .any(|t| t.trim().eq_ignore_ascii_case("upgrade"))
        })
    });
    let websocket = protocol
        .to_str()
        .is_ok_and(|p| p.trim().eq_ignore_ascii_case("websocket"));
    (connection_upgrade && websocket).then(|| protocol.clone())
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

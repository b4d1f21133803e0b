//! Forwarding, as named phases: rewrite the request for the upstream (strip
//! what the client may not say, inject the verified identity, set the
//! `X-Forwarded-*` fields), send it ([`Reach::send`], the one way out, which
//! applies the one rule for answers), then finish a WebSocket upgrade or
//! stream the answer back.
//! WebSocket upgrades are spliced after the route's auth check. Bodies are
//! never collected.

use std::sync::Arc;

use http::header::{self, HeaderValue};
use http::uri::PathAndQuery;
use http::{Response, StatusCode, Version};
use hyper::body::Incoming;
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;

use crate::auth;
use crate::auth::token::Verified;
use crate::error::Error;
use crate::http::body::Body;
use crate::http::headers;
use crate::server::deadlines::Deadline;
use crate::state::{ConnInfo, Snapshot};
use crate::upstream::Reach;

/// Forwards a request that passed route `index`'s checks, waiting for the
/// upstream's answer until `deadline`.
#[allow(clippy::too_many_arguments)]
pub async fn forward(
    snap: &Arc<Snapshot>,
    index: usize,
    mut parts: http::request::Parts,
    body: Incoming,
    target: String,
    conn: &ConnInfo,
    verified: Option<Arc<Verified>>,
    deadline: Deadline<'_>,
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

    // Phase 1: the request. Strip first, then set: nothing the client sends
    // (a `Connection` line naming them, say) removes what wxgate sets.
    let h = &mut parts.headers;
    let trusted = headers::is_trusted(conn.peer.ip(), &snap.config.server.trusted_proxies);
    let strip = &snap.strip[index][usize::from(!trusted)];
    // (`insert` hands back the client's `Host`.)
    let client_host = h.insert(header::HOST, route.upstream.host_header.clone());
    strip.apply(h);
    let original_host = authority.or(client_host);
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

    // Phase 2: the upstream.
    let reach: &Reach = &snap.upstreams[index];
    let mut response = reach
        .send(parts, target, body, strip, upgrade.is_some(), deadline)
        .await?;

    // Phase 3: the answer, its connection fields already gone.
    if response.status() == StatusCode::SWITCHING_PROTOCOLS {
        let (Some(client_upgrade), Some(protocol)) = (client_upgrade, upgrade) else {
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
        // The answer's connection fields are gone (the one rule for
        // answers); the client's connection is upgraded to what it asked.
        let (mut parts, _) = response.into_parts();
        parts
            .headers
            .insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        parts.headers.insert(header::UPGRADE, protocol);
        return Ok(Response::from_parts(parts, Body::empty()));
    }
    Ok(response)
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

//! One request, top-down: refuse what wxgate never serves (CONNECT, an
//! absolute-form target for a host it does not serve), normalize the path,
//! let the [`router`](crate::router) pick wxgate's own endpoint or a route,
//! check the route's method and token ([`auth`]), and hand the request to
//! [`proxy`]. Every failure becomes its JSON error answer here, and the
//! request's [`Record`] follows it into the access log and the metrics.

use std::sync::Arc;

use http::{HeaderValue, Method, Request, Response, Version};
use hyper::body::Incoming;

use crate::auth::{self, forward_auth};
use crate::error::Error;
use crate::http::body::Body;
use crate::http::host::request_host;
use crate::http::path;
use crate::login;
use crate::ops::access::Record;
use crate::proxy;
use crate::router::{check_method, upstream_path_and_query, Target};
use crate::state::{ConnInfo, Gateway, Snapshot};

/// Serves one request; every failure becomes its JSON error answer.
pub async fn handle(gw: &Gateway, mut req: Request<Incoming>, conn: ConnInfo) -> Response<Body> {
    let snap = gw.snapshot();
    let mut record = Record::begin(gw.request_ids(), &snap, &mut req, &conn);
    let (mut response, error) = match serve(gw, &snap, req, &conn, &mut record).await {
        Ok(response) => (response, None),
        Err(error) => {
            let method = record.method();
            tracing::debug!(%method, peer = %conn.peer, error = error.code(), "request refused");
            gw.metrics().auth_failure(&error);
            let code = error.code();
            (error.into_response(), Some(code))
        }
    };
    record.finish(gw.metrics(), &mut response, error);
    response
}

async fn serve(
    gw: &Gateway,
    snap: &Arc<Snapshot>,
    req: Request<Incoming>,
    conn: &ConnInfo,
    record: &mut Record,
) -> Result<Response<Body>, Error> {
    if req.method() == Method::CONNECT {
        return Err(Error::Connect);
    }
    let (parts, body) = req.into_parts();
    let absolute_form = parts.version <= Version::HTTP_11 && parts.uri.authority().is_some();
    if absolute_form && !serves_authority(snap, parts.uri.authority().expect("checked")) {
        return Err(Error::InvalidRequest(
            "the request target names a host wxgate does not serve",
        ));
    }
    let path = path::normalize(parts.uri.path()).map_err(|e| Error::InvalidRequest(e.reason()))?;
    let host = request_host(&parts)?;
    let target = snap.router.find(host, &path).ok_or(Error::NotFound)?;
    record.target = Some(target);
    // wxgate's own endpoints are boxed: their futures (a WeChat call in
    // flight, say) would otherwise make every proxied request's future,
    // which hyper moves and stores, as large as the largest of them.
    let index = match target {
        Target::Login => return Box::pin(login::login(gw, snap, parts, body, conn)).await,
        Target::Session => return Box::pin(login::session(gw, snap, &parts)).await,
        Target::Logout => return Box::pin(login::logout(gw, snap, &parts)).await,
        Target::Jwks => {
            if parts.method != Method::GET && parts.method != Method::HEAD {
                return Err(Error::MethodNotAllowed(HeaderValue::from_static(
                    "GET, HEAD",
                )));
            }
            return Ok(auth::jwks::response(snap.keys.jwks()));
        }
        Target::Verify => {
            return Box::pin(forward_auth::verify(gw, snap, &parts, &path, conn)).await
        }
        Target::Route(index) => index,
    };
    let route = snap.router.route(index);
    check_method(route, &parts.method)?;
    let identity = auth::check_route(snap, gw.store(), route, &parts.headers).await?;
    let upstream_target = upstream_path_and_query(route, &path, parts.uri.query());
    record.identity.clone_from(&identity);
    record.upstream_from = Some(std::time::Instant::now());
    proxy::forward(snap, index, parts, body, upstream_target, conn, identity).await
}

/// An absolute-form target must name a route's host or wxgate's own address.
fn serves_authority(snap: &Snapshot, authority: &http::uri::Authority) -> bool {
    let host = authority.host();
    if snap.router.serves_host(host) {
        return true;
    }
    let listen = snap.config.server.listen;
    let port = authority
        .port_u16()
        .unwrap_or(match snap.config.server.tls {
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

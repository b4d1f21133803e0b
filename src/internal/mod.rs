//! The internal API: what wxgate holds (each app's AppSecret, each user's
//! session_key) lent to the operator's own services on a listener of its
//! own, `[internal] listen`, never reachable through the main one.
//!
//! One request: the peer must be in `allow` and, when a token is set,
//! present it as a Bearer token (compared in constant time); that comes
//! before anything else, the path included. Then the route under
//! `/v1/apps/{appid}/`, the app, the endpoint. Every answer is counted in
//! `wxgate_internal_requests_total` and gets an access-log line.
//!
//! One file per concern: [`access_token`] (get and invalidate), [`relay`]
//! (any WeChat API that takes an access_token), [`users`] (decrypt and the
//! session check), [`phone`] (phone numbers).

mod access_token;
mod body;
mod phone;
mod relay;
mod users;

use std::future::Future;
use std::net::SocketAddr;
use std::time::Instant;

use http::header::{HeaderValue, AUTHORIZATION, CACHE_CONTROL, CONTENT_TYPE};
use http::{Method, Request, Response};
use hyper::body::Incoming;
use serde_json::Value;
use subtle::ConstantTimeEq;
use tokio::net::TcpListener;

use crate::config::{AppConfig, InternalConfig};
use crate::error::Error;
use crate::http::body::Body;
use crate::ops::admin::serve_http1;
use crate::secret::Secret;
use crate::state::{Gateway, Snapshot};
use crate::wechat::access_token::is_token_refused;
use crate::wechat::WeChatError;

/// Serves the internal API until the task is dropped.
pub async fn serve(gw: Gateway, listener: TcpListener) {
    serve_http1(gw, listener, |gw, req, peer| async move {
        handle(&gw, req, peer).await
    })
    .await
}

/// What a request asked for, by path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Endpoint<'a> {
    AccessToken,
    Invalidate,
    /// The WeChat path after `wechat/`, unchecked.
    Relay(&'a str),
    Decrypt(&'a str),
    Session(&'a str),
    PhoneNumber,
}

impl Endpoint<'_> {
    /// The `endpoint` label.
    fn label(&self) -> &'static str {
        match self {
            Endpoint::AccessToken => "access_token",
            Endpoint::Invalidate => "invalidate",
            Endpoint::Relay(_) => "relay",
            Endpoint::Decrypt(_) => "decrypt",
            Endpoint::Session(_) => "session",
            Endpoint::PhoneNumber => "phone_number",
        }
    }

    fn method(&self) -> Option<(Method, &'static str)> {
        match self {
            Endpoint::AccessToken | Endpoint::Session(_) => Some((Method::GET, "GET")),
            Endpoint::Invalidate | Endpoint::Decrypt(_) | Endpoint::PhoneNumber => {
                Some((Method::POST, "POST"))
            }
            Endpoint::Relay(_) => None,
        }
    }
}

/// `/v1/apps/{appid}/...` → the appid and the endpoint.
fn route(path: &str) -> Option<(&str, Endpoint<'_>)> {
    let rest = path.strip_prefix("/v1/apps/")?;
    let (appid, rest) = rest.split_once('/')?;
    let endpoint = match rest {
        "access_token" => Endpoint::AccessToken,
        "access_token/invalidate" => Endpoint::Invalidate,
        "phone_number" => Endpoint::PhoneNumber,
        _ => {
            if let Some(tail) = rest.strip_prefix("wechat/") {
                Endpoint::Relay(tail)
            } else {
                let user = rest.strip_prefix("users/")?;
                let (openid, what) = user.split_once('/')?;
                if openid.is_empty() {
                    return None;
                }
                match what {
                    "decrypt" => Endpoint::Decrypt(openid),
                    "session" => Endpoint::Session(openid),
                    _ => return None,
                }
            }
        }
    };
    (!appid.is_empty()).then_some((appid, endpoint))
}

async fn handle(gw: &Gateway, req: Request<Incoming>, peer: SocketAddr) -> Response<Body> {
    let start = Instant::now();
    let snap = gw.snapshot();
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let routed = route(&path);
    let mut admitted = false;
    let result = match &snap.config.internal {
        // A reload cannot remove the listener; refuse everyone instead.
        None => Err(Error::Forbidden),
        Some(config) => match admit(config, peer, req.headers()) {
            Ok(()) => {
                admitted = true;
                dispatch(gw, &snap, config, routed, req).await
            }
            Err(e) => Err(e),
        },
    };
    let (mut response, error) = match result {
        Ok(response) => (response, None),
        Err(error) => {
            let code = error.code();
            (error.into_response(), Some(code))
        }
    };
    // Tokens and user data: nothing here may be cached on the way.
    response
        .headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    let status = response.status().as_u16();
    let label = routed.map_or("none", |(_, e)| e.label());
    gw.metrics().internal_request(label, status);
    if snap.config.log.access {
        // What the path names is logged only for an admitted caller: a
        // refused one does not get to write into the log.
        let named = routed.filter(|_| admitted);
        tracing::info!(
            target: "wxgate::access",
            listener = %"internal",
            method = %method,
            endpoint = %label,
            appid = named.map(|(appid, _)| display(appid)),
            wechat_path = named.and_then(|(_, e)| match e {
                Endpoint::Relay(path) => Some(display(path)),
                _ => None,
            }),
            status,
            duration_ms = start.elapsed().as_micros() as f64 / 1000.0,
            error = error.map(display),
            peer = %peer.ip(),
            "request"
        );
    }
    response
}

/// `allow`, then the Bearer token: before anything else is looked at.
fn admit(
    config: &InternalConfig,
    peer: SocketAddr,
    headers: &http::HeaderMap,
) -> Result<(), Error> {
    let ip = crate::http::headers::canonical(peer.ip());
    if !config.allow.iter().any(|net| net.contains(&ip)) {
        return Err(Error::Forbidden);
    }
    let Some(expected) = &config.token else {
        return Ok(());
    };
    let presented = headers
        .get(AUTHORIZATION)
        .map(HeaderValue::as_bytes)
        .filter(|v| v.len() > 7 && v[..7].eq_ignore_ascii_case(b"bearer "))
        .map(|v| &v[7..])
        .unwrap_or_default();
    if bool::from(presented.ct_eq(expected.expose().as_bytes())) {
        Ok(())
    } else {
        Err(Error::Forbidden)
    }
}

async fn dispatch(
    gw: &Gateway,
    snap: &Snapshot,
    config: &InternalConfig,
    routed: Option<(&str, Endpoint<'_>)>,
    req: Request<Incoming>,
) -> Result<Response<Body>, Error> {
    let (appid, endpoint) = routed.ok_or(Error::NotFound)?;
    let app = snap
        .config
        .apps
        .iter()
        .find(|a| a.appid == appid)
        .ok_or(Error::UnknownApp)?;
    if let Some((allowed, allow)) = endpoint.method() {
        if req.method() != allowed {
            return Err(Error::MethodNotAllowed(HeaderValue::from_static(allow)));
        }
    }
    let call = Call {
        gw,
        snap,
        config,
        app,
    };
    match endpoint {
        Endpoint::AccessToken => access_token::get(&call).await,
        Endpoint::Invalidate => access_token::invalidate(&call, req.into_body()).await,
        Endpoint::Relay(path) => relay::relay(&call, path, req).await,
        Endpoint::Decrypt(openid) => users::decrypt(&call, openid, req.into_body()).await,
        Endpoint::Session(openid) => users::session(&call, openid).await,
        Endpoint::PhoneNumber => phone::phone_number(&call, req.into_body()).await,
    }
}

/// What every endpoint works with.
struct Call<'a> {
    gw: &'a Gateway,
    snap: &'a Snapshot,
    config: &'a InternalConfig,
    app: &'a AppConfig,
}

impl Call<'_> {
    /// A WeChat JSON API called with the app's token: renewed and called
    /// once more if WeChat refuses the token (see `Tokens::with_token`).
    /// The outer error is wxgate's; the inner one is WeChat's answer.
    async fn wechat_json<F, Fut>(&self, mut api: F) -> Result<Result<Value, WeChatError>, Error>
    where
        F: FnMut(Secret) -> Fut,
        Fut: Future<Output = Result<Value, WeChatError>>,
    {
        let refused = |r: &Result<Value, WeChatError>| match r {
            Err(WeChatError::Errcode(code)) => is_token_refused(Some(*code)),
            _ => false,
        };
        self.gw
            .tokens()
            .with_token(&self.snap.wechat_api, self.app, refused, |token| {
                let answer = api(token);
                async move { Ok(answer.await) }
            })
            .await
    }
}

/// A 200 JSON answer.
fn json(value: &serde_json::Value) -> Response<Body> {
    let mut response = Response::new(Body::full(value.to_string()));
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes() {
        let r = |p| route(p);
        assert_eq!(
            r("/v1/apps/wx1/access_token"),
            Some(("wx1", Endpoint::AccessToken))
        );
        assert_eq!(
            r("/v1/apps/wx1/access_token/invalidate"),
            Some(("wx1", Endpoint::Invalidate))
        );
        assert_eq!(
            r("/v1/apps/wx1/wechat/wxa/msg_sec_check"),
            Some(("wx1", Endpoint::Relay("wxa/msg_sec_check")))
        );
        assert_eq!(
            r("/v1/apps/wx1/users/o1/decrypt"),
            Some(("wx1", Endpoint::Decrypt("o1")))
        );
        assert_eq!(
            r("/v1/apps/wx1/users/o1/session"),
            Some(("wx1", Endpoint::Session("o1")))
        );
        assert_eq!(
            r("/v1/apps/wx1/phone_number"),
            Some(("wx1", Endpoint::PhoneNumber))
        );
        for bad in [
            "/",
            "/v1/apps/wx1",
            "/v1/apps//access_token",
            "/v1/apps/wx1/access_token/",
            "/v1/apps/wx1/users//decrypt",
            "/v1/apps/wx1/users/o1/decrypt/x",
            "/v1/apps/wx1/users/o1",
            "/v2/apps/wx1/access_token",
        ] {
            assert_eq!(r(bad), None, "{bad}");
        }
    }

    #[test]
    fn admission() {
        let config = InternalConfig {
            listen: "127.0.0.1:0".parse().unwrap(),
            allow: vec!["127.0.0.0/8".parse().unwrap(), "::1/128".parse().unwrap()],
            token: Some(crate::secret::Secret::new("internal-token-0123456789")),
            max_body: 1024,
            decrypt_max_age: std::time::Duration::from_secs(600),
        };
        let headers = |auth: &str| {
            let mut h = http::HeaderMap::new();
            if !auth.is_empty() {
                h.insert(AUTHORIZATION, HeaderValue::from_str(auth).unwrap());
            }
            h
        };
        let local: SocketAddr = "127.0.0.1:5000".parse().unwrap();
        let mapped: SocketAddr = "[::ffff:127.0.0.1]:5000".parse().unwrap();
        let remote: SocketAddr = "10.0.0.1:5000".parse().unwrap();
        let good = headers("Bearer internal-token-0123456789");
        assert!(admit(&config, local, &good).is_ok());
        assert!(admit(&config, mapped, &good).is_ok());
        assert!(admit(&config, local, &headers("bearer internal-token-0123456789")).is_ok());
        assert!(admit(&config, remote, &good).is_err());
        for bad in [
            "",
            "Bearer ",
            "Bearer internal-token-012345678",
            "Bearer internal-token-01234567890",
            "Basic internal-token-0123456789",
            "internal-token-0123456789",
        ] {
            assert!(admit(&config, local, &headers(bad)).is_err(), "{bad}");
        }
        let open = InternalConfig {
            token: None,
            ..config
        };
        assert!(admit(&open, local, &headers("")).is_ok());
        assert!(admit(&open, remote, &headers("")).is_err());
    }
}

//! The admin listener: liveness, readiness and metrics. Plain
//! HTTP/1.1 on its own address, meant for probes, never for clients.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;

use http::header::{HeaderValue, CONTENT_TYPE};
use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;

use crate::http::body::Body;
use crate::ops::metrics::Sampled;
use crate::state::Gateway;

/// Serves the admin endpoints until the task is dropped.
pub async fn serve(gw: Gateway, listener: TcpListener) {
    serve_http1(gw, listener, |gw, req, _| async move { answer(&gw, &req) }).await
}

/// A side listener's accept loop (admin, internal API): plain HTTP/1.1,
/// each request answered by `handle` with the peer's address.
pub(crate) async fn serve_http1<F, Fut>(gw: Gateway, listener: TcpListener, handle: F)
where
    F: Fn(Gateway, Request<Incoming>, SocketAddr) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Response<Body>> + Send + 'static,
{
    loop {
        let Ok((stream, peer)) = listener.accept().await else {
            tokio::task::yield_now().await;
            continue;
        };
        let (gw, handle) = (gw.clone(), handle.clone());
        tokio::spawn(async move {
            let service = service_fn(move |req| {
                let answer = handle(gw.clone(), req, peer);
                async move { Ok::<_, Infallible>(answer.await) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(std::time::Duration::from_secs(10))
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

fn answer(gw: &Gateway, req: &Request<Incoming>) -> Response<Body> {
    let (status, body) = match (req.method(), req.uri().path()) {
        (&Method::GET | &Method::HEAD, "/healthz") => (StatusCode::OK, r#"{"status":"ok"}"#),
        (&Method::GET | &Method::HEAD, "/readyz") if gw.is_draining() => {
            (StatusCode::SERVICE_UNAVAILABLE, r#"{"status":"draining"}"#)
        }
        (&Method::GET | &Method::HEAD, "/readyz") => (StatusCode::OK, r#"{"status":"ready"}"#),
        (&Method::GET | &Method::HEAD, "/metrics") => {
            let sampled = Sampled {
                store: gw.store().counts(),
                certificate_expiry: gw
                    .snapshot()
                    .config
                    .server
                    .tls
                    .as_ref()
                    .and_then(|tls| tls.not_after),
            };
            let mut text = gw.metrics().encode(&sampled);
            gw.store().encode_metrics(&mut text);
            let mut response = Response::new(Body::full(text));
            response.headers_mut().insert(
                CONTENT_TYPE,
                HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
            );
            return response;
        }
        _ => (
            StatusCode::NOT_FOUND,
            r#"{"error":"not_found","message":"admin endpoints: /healthz, /readyz, /metrics"}"#,
        ),
    };
    let mut response = Response::new(Body::full(body));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

//! `[dev] echo_upstream`: a stand-in business service for trying wxgate on a
//! laptop. It answers every request with what it received, so the identity
//! headers wxgate injects can be seen. Config validation keeps it on loopback.

use std::collections::BTreeMap;
use std::convert::Infallible;

use http::header::{HeaderValue, CONTENT_TYPE};
use http::{Request, Response};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

use crate::http::body::Body;

pub async fn serve_echo(listener: TcpListener) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            tokio::task::yield_now().await;
            continue;
        };
        tokio::spawn(async move {
            let service =
                service_fn(|req: Request<Incoming>| async move { Ok::<_, Infallible>(echo(&req)) });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

fn echo(req: &Request<Incoming>) -> Response<Body> {
    let headers: BTreeMap<&str, &str> = req
        .headers()
        .iter()
        .map(|(k, v)| (k.as_str(), v.to_str().unwrap_or("<binary>")))
        .collect();
    let body = serde_json::json!({
        "service": "wxgate dev echo upstream",
        "method": req.method().as_str(),
        "path": req.uri().to_string(),
        "headers": headers,
    });
    let mut response = Response::new(Body::full(
        serde_json::to_string_pretty(&body).unwrap_or_default(),
    ));
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

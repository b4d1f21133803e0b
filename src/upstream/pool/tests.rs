//! The pool against a real HTTP/1.1 server on a real socket: reuse, what
//! is never reused, and the idle sweep.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::AtomicUsize;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::Frame;
use tokio::net::TcpListener;
use tokio::sync::mpsc;

use super::*;

/// An upstream answering `/big` with 10 MB (chunked) and anything else with
/// "ok". Counts accepted connections; reports each one that ends.
struct Upstream {
    addr: SocketAddr,
    accepted: Arc<AtomicUsize>,
    closed: mpsc::UnboundedReceiver<()>,
}

async fn upstream() -> Upstream {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let (tx, closed) = mpsc::unbounded_channel();
    let count = accepted.clone();
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            count.fetch_add(1, Ordering::SeqCst);
            let tx = tx.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(|req: Request<Incoming>| async move {
                    let body = if req.uri().path() == "/big" {
                        let chunks = (0..160).map(|_| {
                            Ok::<_, Infallible>(Frame::data(Bytes::from(vec![b'x'; 65536])))
                        });
                        StreamBody::new(futures_util::stream::iter(chunks)).boxed()
                    } else {
                        Full::new(Bytes::from_static(b"ok")).boxed()
                    };
                    Ok::<_, Infallible>(Response::new(body))
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
                let _ = tx.send(());
            });
        }
    });
    Upstream {
        addr,
        accepted,
        closed,
    }
}

fn pool_for(up: &Upstream, sweep: Duration) -> Arc<HostPool> {
    let pools = Pools::with_sweep(Duration::from_secs(5), sweep);
    pools.get(&Authority::try_from(up.addr.to_string()).unwrap())
}

fn get(path: &str) -> Request<Body> {
    Request::builder()
        .uri(path)
        .header(http::header::HOST, "upstream")
        .body(Body::empty())
        .unwrap()
}

/// One request, its answer read to the end as the proxy would.
async fn roundtrip(pool: &Arc<HostPool>, path: &str) -> Bytes {
    let (response, lease) = pool.send(get(path)).await.unwrap();
    let body = Body::upstream(response.into_body(), Some(lease));
    body.collect().await.unwrap().to_bytes()
}

#[tokio::test]
async fn answers_read_to_the_end_give_their_connection_back() {
    let up = upstream().await;
    let pool = pool_for(&up, IDLE_SWEEP);
    for _ in 0..5 {
        assert_eq!(roundtrip(&pool, "/").await, "ok");
    }
    // Chunked, of unknown length: given back at its end, not before.
    assert_eq!(roundtrip(&pool, "/big").await.len(), 160 * 65536);
    assert_eq!(roundtrip(&pool, "/").await, "ok");
    assert_eq!(up.accepted.load(Ordering::SeqCst), 1);
    assert_eq!(pool.lock().hyper.len(), 1);
}

#[tokio::test]
async fn an_answer_dropped_before_its_end_closes_its_connection() {
    let mut up = upstream().await;
    let pool = pool_for(&up, IDLE_SWEEP);
    let (response, lease) = pool.send(get("/big")).await.unwrap();
    let mut body = Body::upstream(response.into_body(), Some(lease));
    let first = body.frame().await.unwrap().unwrap();
    assert!(first.is_data());
    drop(body);
    // Not in the pool, and closed: the next request gets a new connection.
    assert_eq!(pool.lock().hyper.len(), 0);
    tokio::time::timeout(Duration::from_secs(10), up.closed.recv())
        .await
        .expect("the abandoned connection is closed");
    assert_eq!(roundtrip(&pool, "/").await, "ok");
    assert_eq!(up.accepted.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn idle_connections_are_closed_by_the_sweep() {
    let mut up = upstream().await;
    let pool = pool_for(&up, Duration::from_millis(50));
    assert_eq!(roundtrip(&pool, "/").await, "ok");
    assert_eq!(pool.lock().hyper.len(), 1);
    // Closed after one to two sweeps, which the upstream sees.
    tokio::time::timeout(Duration::from_secs(10), up.closed.recv())
        .await
        .expect("the idle connection is closed");
    assert_eq!(pool.lock().hyper.len(), 0);
    // And the pool goes on with a new one.
    assert_eq!(roundtrip(&pool, "/").await, "ok");
    assert_eq!(up.accepted.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn a_refused_connection_is_a_connect_error() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let pools = Pools::new(Duration::from_secs(5));
    let pool = pools.get(&Authority::try_from(addr.to_string()).unwrap());
    let err = pool.send(get("/")).await.unwrap_err();
    assert!(err.is_connect(), "{err}");
}

#[tokio::test]
async fn a_pool_is_shared_while_used_and_closed_when_not() {
    let mut up = upstream().await;
    let pools = Pools::new(Duration::from_secs(5));
    let authority = Authority::try_from(up.addr.to_string()).unwrap();
    let pool = pools.get(&authority);
    assert!(Arc::ptr_eq(&pool, &pools.get(&authority)));
    assert_eq!(roundtrip(&pool, "/").await, "ok");
    assert_eq!(pool.lock().hyper.len(), 1);
    // No config holds it any more (a reload dropped the route): its idle
    // connection is closed, and the address gets a fresh pool.
    drop(pool);
    tokio::time::timeout(Duration::from_secs(10), up.closed.recv())
        .await
        .expect("the unused pool's connection is closed");
    let pool = pools.get(&authority);
    assert_eq!(pool.lock().hyper.len(), 0);
    assert_eq!(roundtrip(&pool, "/").await, "ok");
    assert_eq!(up.accepted.load(Ordering::SeqCst), 2);
}

//! Exchanges against a scripted upstream on a real socket: each accepted
//! connection answers its requests with the next answers of its script.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use http::uri::Authority;
use http_body_util::BodyExt;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;
use tokio::sync::mpsc;

use super::*;
use crate::upstream::pool::Pools;

/// What a connection does after answering its script.
#[derive(Clone, Copy, PartialEq)]
enum After {
    /// Keeps reading requests, answering none (the test ends first).
    Wait,
    /// Reads one more request, then closes without an answer.
    CloseOnNext,
    /// Closes as soon as the script is done.
    Close,
}

struct Upstream {
    addr: SocketAddr,
    accepted: Arc<AtomicUsize>,
    /// Each request the upstream read: its head, then its body.
    requests: mpsc::UnboundedReceiver<(String, Vec<u8>)>,
    /// A message each time a connection has been closed.
    closed: mpsc::UnboundedReceiver<()>,
}

/// Connection `n` (from 0) answers with `scripts[n]` (the last script for
/// any later one), one answer per request read.
async fn upstream(scripts: Vec<Vec<&'static [u8]>>, after: After) -> Upstream {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let (tx, requests) = mpsc::unbounded_channel();
    let (closed_tx, closed) = mpsc::unbounded_channel();
    let count = accepted.clone();
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            let n = count.fetch_add(1, Ordering::SeqCst);
            let script = scripts[n.min(scripts.len() - 1)].clone();
            let (tx, closed_tx) = (tx.clone(), closed_tx.clone());
            tokio::spawn(async move {
                let mut stream = BufReader::new(stream);
                serve(&mut stream, script, after, &tx).await;
                drop(stream);
                let _ = closed_tx.send(());
            });
        }
    });
    Upstream {
        addr,
        accepted,
        requests,
        closed,
    }
}

async fn serve(
    stream: &mut BufReader<TcpStream>,
    script: Vec<&[u8]>,
    after: After,
    requests: &mpsc::UnboundedSender<(String, Vec<u8>)>,
) {
    for answer in script {
        let Some(request) = read_request(stream).await else {
            return;
        };
        let _ = requests.send(request);
        stream.get_mut().write_all(answer).await.unwrap();
    }
    match after {
        After::Close => {}
        After::CloseOnNext => {
            if let Some(request) = read_request(stream).await {
                let _ = requests.send(request);
            }
        }
        After::Wait => while read_request(stream).await.is_some() {},
    }
}

async fn read_request(stream: &mut BufReader<TcpStream>) -> Option<(String, Vec<u8>)> {
    let mut head = String::new();
    loop {
        let mut line = String::new();
        if stream.read_line(&mut line).await.ok()? == 0 {
            return None;
        }
        head.push_str(&line);
        if line == "\r\n" {
            break;
        }
    }
    let length = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-length: ")
                .map(str::to_owned)
        })
        .map_or(0, |n| n.parse().unwrap());
    let mut body = vec![0; length];
    stream.read_exact(&mut body).await.ok()?;
    Some((head, body))
}

fn pool(up: &Upstream) -> Arc<HostPool> {
    Pools::new(Duration::from_secs(5)).get(&Authority::try_from(up.addr.to_string()).unwrap())
}

fn host() -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert(http::header::HOST, http::HeaderValue::from_static("up"));
    headers
}

async fn ask(
    pool: &Arc<HostPool>,
    method: Method,
) -> Result<(http::StatusCode, Bytes), UpstreamError> {
    let headers = host();
    let out = Outgoing {
        method: &method,
        target: "/x?y=1",
        headers: &headers,
        body: None,
    };
    let answer = pool.exchange(out).await?;
    let status = answer.status();
    let body = answer.into_body().collect().await.map_err(|e| e.0)?;
    Ok((status, body.to_bytes()))
}

const OK: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
const CHUNKED: &[u8] =
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n";

#[tokio::test]
async fn answers_of_certain_length_reuse_their_connection() {
    let mut up = upstream(vec![vec![OK, CHUNKED, OK]], After::Wait).await;
    let pool = pool(&up);
    assert_eq!(ask(&pool, Method::GET).await.unwrap().1, "ok");
    assert_eq!(ask(&pool, Method::GET).await.unwrap().1, "abc");
    assert_eq!(ask(&pool, Method::GET).await.unwrap().1, "ok");
    assert_eq!(up.accepted.load(Ordering::SeqCst), 1);
    let (head, _) = up.requests.recv().await.unwrap();
    assert_eq!(head, "GET /x?y=1 HTTP/1.1\r\nhost: up\r\n\r\n");
}

#[tokio::test]
async fn an_answer_ended_by_close_is_read_to_the_close_and_not_reused() {
    let up = upstream(
        vec![vec![b"HTTP/1.1 200 OK\r\n\r\nall of it"]],
        After::Close,
    )
    .await;
    let pool = pool(&up);
    for _ in 0..2 {
        assert_eq!(ask(&pool, Method::GET).await.unwrap().1, "all of it");
    }
    assert_eq!(up.accepted.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn bytes_past_the_end_of_an_answer_are_never_read_as_the_next_one() {
    // A desynchronised upstream sends a second answer nobody asked for.
    let smuggled: &[u8] =
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokHTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nforged";
    let up = upstream(vec![vec![smuggled], vec![OK]], After::Wait).await;
    let pool = pool(&up);
    assert_eq!(ask(&pool, Method::GET).await.unwrap().1, "ok");
    assert_eq!(ask(&pool, Method::GET).await.unwrap().1, "ok");
    assert_eq!(up.accepted.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn a_reused_connection_closed_unanswered_is_retried_only_when_safe() {
    // Connection 0 answers once, then reads the next request and closes.
    let up = upstream(vec![vec![OK], vec![OK]], After::CloseOnNext).await;
    let pool = pool(&up);
    assert_eq!(ask(&pool, Method::GET).await.unwrap().1, "ok");
    // A GET may be sent twice: it is, on a new connection.
    assert_eq!(ask(&pool, Method::GET).await.unwrap().1, "ok");
    assert_eq!(up.accepted.load(Ordering::SeqCst), 2);
    // A POST is not: the upstream may have acted on it.
    let err = ask(&pool, Method::POST).await.unwrap_err();
    assert!(matches!(err, UpstreamError::Io(_)), "{err}");
    assert_eq!(up.accepted.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn an_idle_connection_the_upstream_closed_is_not_used() {
    let mut up = upstream(vec![vec![OK]], After::Close).await;
    let pool = pool(&up);
    assert_eq!(ask(&pool, Method::POST).await.unwrap().1, "ok");
    // The upstream closed after its answer. Once the runtime has polled its
    // events (a yield lets it), a POST, which is never sent twice, must not
    // be written on that connection.
    up.closed.recv().await.unwrap();
    tokio::task::yield_now().await;
    assert_eq!(ask(&pool, Method::POST).await.unwrap().1, "ok");
    assert_eq!(up.accepted.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn a_body_of_known_length_is_sent_whole() {
    let mut up = upstream(vec![vec![OK]], After::Wait).await;
    let pool = pool(&up);
    // A real client body: hyper's `Incoming`, from a request to a server.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let front = listener.local_addr().unwrap();
    let pool2 = pool.clone();
    tokio::spawn(async move {
        let (stream, _) = listener.accept().await.unwrap();
        let service = hyper::service::service_fn(move |req: http::Request<Incoming>| {
            let pool = pool2.clone();
            async move {
                let (parts, body) = req.into_parts();
                let length = http_body::Body::size_hint(&body).exact().unwrap();
                let out = Outgoing {
                    method: &parts.method,
                    target: "/upload",
                    headers: &parts.headers,
                    body: Some((body, length)),
                };
                let answer = pool.exchange(out).await.unwrap();
                Ok::<_, std::convert::Infallible>(answer)
            }
        });
        hyper::server::conn::http1::Builder::new()
            .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
            .await
            .unwrap();
    });
    let mut client = TcpStream::connect(front).await.unwrap();
    let payload = vec![b'p'; 300_000];
    let head = format!(
        "PUT /in HTTP/1.1\r\nhost: up\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        payload.len()
    );
    client.write_all(head.as_bytes()).await.unwrap();
    client.write_all(&payload).await.unwrap();
    let mut answer = String::new();
    client.read_to_string(&mut answer).await.unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.ends_with("\r\n\r\nok"), "{answer}");
    let (head, body) = up.requests.recv().await.unwrap();
    assert!(head.starts_with("PUT /upload HTTP/1.1\r\n"), "{head}");
    assert_eq!(body, payload);
}

#[tokio::test]
async fn a_body_dropped_before_its_end_closes_its_connection() {
    let long: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nfirst part";
    let up = upstream(vec![vec![long], vec![OK]], After::Wait).await;
    let pool = pool(&up);
    let headers = host();
    let out = Outgoing {
        method: &Method::GET,
        target: "/",
        headers: &headers,
        body: None,
    };
    let mut body = pool.exchange(out).await.unwrap().into_body();
    let first = body.frame().await.unwrap().unwrap().into_data().unwrap();
    assert_eq!(first, "first part");
    drop(body);
    assert!(pool.lock().conns.is_empty());
    assert_eq!(ask(&pool, Method::GET).await.unwrap().1, "ok");
    assert_eq!(up.accepted.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn a_body_cut_short_is_an_error_not_an_end() {
    for cut in [
        &b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly part"[..],
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n9\r\nonly part\r\n",
    ] {
        let up = upstream(vec![vec![cut]], After::Close).await;
        let pool = pool(&up);
        let err = ask(&pool, Method::GET).await.unwrap_err();
        assert!(matches!(err, UpstreamError::Io(_)), "{err}");
        assert!(pool.lock().conns.is_empty());
    }
}

//! The mini-program client (`sdk/miniprogram`) under Node's own test runner,
//! against the real `wxgate` binary and the fake WeChat of `common`.
//!
//! The node tests start their gateways themselves (the binary, whose path
//! they get in `WXGATE_BIN`), with `wechat.api_base` pointing at the fake
//! WeChat this test runs. Their stand-in `wx.login` gets its codes from the
//! fake through a small control server (below), the way the real `wx.login`
//! gets one from WeChat, and they count the WeChat calls their codes caused
//! through it too.

use std::convert::Infallible;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use tokio::net::TcpListener;

use crate::common::fake_wechat::FakeWeChat;
use crate::common::process::BIN;
use crate::common::{APPID, APP_SECRET};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs node (Debian package nodejs)"]
async fn the_node_tests_of_the_miniprogram_client_pass() {
    let node = std::env::var("NODE_BIN").unwrap_or_else(|_| "node".into());
    if Command::new(&node).arg("--version").output().is_err() {
        panic!("node is not installed: apt-get install nodejs (or set NODE_BIN)");
    }
    let wechat = Arc::new(FakeWeChat::start().await);
    wechat.add_app(APPID, APP_SECRET);
    let control = serve_control(Arc::clone(&wechat)).await;

    let files = test_files(&Path::new(env!("CARGO_MANIFEST_DIR")).join("sdk/miniprogram/test"));
    let mut cmd = Command::new(&node);
    cmd.arg("--test")
        .arg("--test-reporter=tap")
        .args(&files)
        .env("WXGATE_BIN", BIN)
        .env("WXGATE_TEST_WECHAT", wechat.base_url())
        .env("WXGATE_TEST_CONTROL", format!("http://{control}"))
        .env("WXGATE_TEST_APPID", APPID)
        .env("WXGATE_TEST_APP_SECRET", APP_SECRET);
    // Node runs on a blocking thread; the fake WeChat and the control server
    // keep serving on the runtime meanwhile.
    let out = tokio::task::spawn_blocking(move || cmd.output())
        .await
        .unwrap()
        .expect("run node");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("{stdout}\n{stderr}");
    let count = |name: &str| {
        stdout
            .lines()
            .find_map(|l| l.strip_prefix(&format!("# {name} ")))
            .and_then(|n| n.trim().parse::<usize>().ok())
            .unwrap_or_else(|| panic!("no `# {name}` line in node's output"))
    };
    assert!(out.status.success(), "node --test failed: {}", out.status);
    assert_eq!(count("fail"), 0);
    assert!(count("pass") >= 10, "node ran too few tests");
}

/// The `*.test.js` files of `dir`, sorted (node 18 takes files, not folders).
fn test_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.unwrap().path())
        .filter(|p| p.to_string_lossy().ends_with(".test.js"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no *.test.js in {}", dir.display());
    files
}

/// Serves the control API of the fake WeChat for the node tests on
/// 127.0.0.1:0. Every call is `POST /<verb>` with a JSON body:
/// `mint {openid}` → `{code}`; `use {code}` and `expire {code}` make a
/// minted code answer 40163 or 40029; `block {openid}` makes the user's
/// codes answer 40226; `calls {codes}` → `{calls}`, the number of
/// `jscode2session` requests that carried one of `codes`.
async fn serve_control(wechat: Arc<FakeWeChat>) -> std::net::SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let wechat = Arc::clone(&wechat);
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req| {
                    let wechat = Arc::clone(&wechat);
                    async move { Ok::<_, Infallible>(control(&wechat, req).await) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    addr
}

async fn control(wechat: &FakeWeChat, req: Request<Incoming>) -> Response<Full<Bytes>> {
    let verb = req.uri().path().trim_start_matches('/').to_owned();
    let body = req.into_body().collect().await.map(|b| b.to_bytes());
    let body: Value = body
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or(Value::Null);
    let field = |name: &str| body[name].as_str().unwrap_or_default().to_owned();
    let answer = match verb.as_str() {
        "mint" => json!({ "code": wechat.mint_code(APPID, &field("openid")) }),
        "use" => {
            wechat.use_code(&field("code"));
            json!({})
        }
        "expire" => {
            wechat.expire_code(&field("code"));
            json!({})
        }
        "block" => {
            wechat.block_user(APPID, &field("openid"));
            json!({})
        }
        "calls" => {
            let codes = body["codes"].as_array().cloned().unwrap_or_default();
            let calls: usize = codes
                .iter()
                .filter_map(Value::as_str)
                .map(|c| wechat.calls_for_code(c))
                .sum();
            json!({ "calls": calls })
        }
        _ => {
            let mut res = Response::new(Full::new(Bytes::from_static(b"{}")));
            *res.status_mut() = http::StatusCode::NOT_FOUND;
            return res;
        }
    };
    let mut res = Response::new(Full::new(Bytes::from(answer.to_string())));
    res.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    res
}

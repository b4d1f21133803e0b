//! Helpers for the `attack_*` suites: forged tokens and a bait listener that
//! counts the connections anything makes to it.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use tokio::net::TcpListener;
use tokio::task::AbortHandle;

use super::{assert_error, RawResponse};

pub fn b64(bytes: impl AsRef<[u8]>) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// The HMAC of `input` with `secret`, by hash name ("256", "384", "512").
pub fn hmac(bits: &str, secret: &str, input: &[u8]) -> Vec<u8> {
    fn tag<M: Mac + hmac::digest::KeyInit>(secret: &str, input: &[u8]) -> Vec<u8> {
        let mut mac = <M as Mac>::new_from_slice(secret.as_bytes()).unwrap();
        mac.update(input);
        mac.finalize().into_bytes().to_vec()
    }
    match bits {
        "256" => tag::<Hmac<sha2::Sha256>>(secret, input),
        "384" => tag::<Hmac<sha2::Sha384>>(secret, input),
        "512" => tag::<Hmac<sha2::Sha512>>(secret, input),
        other => panic!("no HMAC-SHA{other}"),
    }
}

/// A token with exactly this header and payload JSON, signed with HMAC-SHA
/// `bits` under `secret`.
pub fn forge_with(bits: &str, header: &str, payload: &str, secret: &str) -> String {
    let input = format!("{}.{}", b64(header), b64(payload));
    let sig = b64(hmac(bits, secret, input.as_bytes()));
    format!("{input}.{sig}")
}

/// HS256 under the test gateway's real key: only the header or claims can
/// make it fail.
pub fn forge(header: &str, payload: &str) -> String {
    forge_with("256", header, payload, super::JWT_SECRET)
}

/// Claims that the test gateway accepts, plus `extra` fields.
pub fn good_claims(extra: &str) -> String {
    let now = wxgate::auth::token::now();
    let base = format!(
        r#""iss":"wxgate","sub":"o-mallory","aud":"{}","iat":{now},"exp":{},"jti":"jti-attack""#,
        super::APPID,
        now + 600
    );
    if extra.is_empty() {
        format!("{{{base}}}")
    } else {
        format!("{{{base},{extra}}}")
    }
}

pub const GOOD_HEADER: &str = r#"{"alg":"HS256","typ":"JWT","kid":"k1"}"#;

/// A 401 `invalid_token` answer with its challenge.
pub fn assert_invalid_token(res: &RawResponse) {
    assert_error(res, 401, "invalid_token");
    let challenge = res.header("www-authenticate").unwrap_or_default();
    assert!(challenge.contains("error=\"invalid_token\""), "{res:?}");
}

/// A listener that accepts and counts connections, answering nothing.
pub struct Bait {
    pub addr: SocketAddr,
    hits: Arc<AtomicUsize>,
    task: AbortHandle,
}

impl Bait {
    pub async fn start() -> Bait {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let hits = Arc::new(AtomicUsize::new(0));
        let counter = hits.clone();
        let task = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((stream, _)) = listener.accept().await {
                counter.fetch_add(1, Ordering::SeqCst);
                held.push(stream);
            }
        })
        .abort_handle();
        Bait { addr, hits, task }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }
}

impl Drop for Bait {
    fn drop(&mut self) {
        self.task.abort();
    }
}

//! Measures what the in-memory session store costs per entry, for sizing
//! `store.capacity` against a pod's memory limit: fills a `MemoryStore`
//! with N entries of one kind at a time (sessions, revocations, login
//! codes, each with values of real sizes) and reads this process's VmRSS
//! from /proc before and after. Then the same for the verified-token cache
//! (at most 50,000 tokens per config, whatever `store.capacity` says).
//! Same allocator as the binary (mimalloc).
//!
//! ```sh
//! cargo run --release --example store_rss -- 1000000
//! ```
//!
//! Linux only (reads /proc).

use wxgate::auth::token::{now, Keys};
use wxgate::config::StoreConfig;
use wxgate::secret::Secret;
use wxgate::store::{Claim, CodeOutcome, Settle, Store, UserSession};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The length of an HS256 token as wxgate mints them (header with `kid`,
/// claims with a 28-character openid and unionid, signature).
const TOKEN_LEN: usize = 344;

const CONFIG: &str = r#"
[server]
listen = "127.0.0.1:0"
[[apps]]
appid = "wx0123456789abcdef"
secret = "unused"
[token]
[[token.keys]]
id = "k1"
secret = "store-rss-measurement-key-0123456789abcdef"
"#;

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let n: u64 = std::env::args()
        .nth(1)
        .map_or(200_000, |n| n.parse().expect("a count"));
    let store = Store::new(&StoreConfig {
        capacity: n,
        redis: None,
    })
    .expect("a memory store");
    let appid = "wx0123456789abcdef";
    let exp = now() + 7200;
    // Distinct texts of the real lengths: openid and unionid 28 characters,
    // session_key 24 (base64 of 16 bytes), jti 22, a login code 32.
    let text =
        |prefix: &str, i: u64, len: usize| format!("{prefix}{i:0>w$}", w = len - prefix.len());

    let mut rows = Vec::new();
    let base = rss_kib();
    for i in 0..n {
        let session = UserSession {
            session_key: Secret::new(text("k", i, 24)),
            unionid: Some(text("u", i, 28)),
        };
        store
            .put_session(appid, &text("o", i, 28), session)
            .await
            .expect("the memory store never fails");
    }
    rows.push((
        "session (openid, session_key, unionid)",
        measure(&store, base),
    ));

    let base = rss_kib();
    for i in 0..n {
        // (A logout: the revocation, and the session dropped, which these
        // users never had.)
        store
            .end_session(appid, &text("x", i, 28), &text("j", i, 22), exp)
            .await
            .expect("room for every revocation");
    }
    rows.push(("revocation (jti, expiry)", measure(&store, base)));

    let base = rss_kib();
    for i in 0..n {
        let outcome = CodeOutcome::Token {
            access_token: Secret::new(text("t", i, TOKEN_LEN)),
            jti: text("j", i, 22),
            lifetime: 7200,
            issued_ms: now() * 1000,
        };
        let code = text("c", i, 32);
        let hold = std::time::Duration::from_secs(5);
        let Ok(Claim::Mine(lease)) = store.claim_code(appid, &code, hold, false).await else {
            panic!("a new code is free to take");
        };
        store
            .settle_code(appid, &code, lease, Settle::Answered(&outcome))
            .await
            .expect("the memory store never fails");
    }
    rows.push((
        "login code (code, the token answered)",
        measure(&store, base),
    ));

    // The verified-token cache: 50,000 distinct tokens (its bound), minted
    // first so that only the cache's copies are measured.
    let cached = 50_000;
    let config =
        wxgate::Config::parse(CONFIG, std::path::Path::new("store_rss.toml")).expect("the config");
    let keys = Keys::new(&config.token, config.appids());
    let tokens: Vec<String> = (0..cached)
        .map(|i| {
            let (token, _) = keys
                .mint(
                    &text("o", i, 28),
                    appid,
                    Some(&text("u", i, 28)),
                    keys.ttl(),
                    now(),
                )
                .expect("minted");
            token
        })
        .collect();
    let base = rss_kib();
    for token in &tokens {
        keys.verify(token, now()).expect("valid");
    }
    let kib = rss_kib().saturating_sub(base);
    println!(
        "verified-token cache: {cached} tokens of {} bytes: +{kib} KiB RSS, {:.0} bytes per entry",
        tokens[0].len(),
        kib as f64 * 1024.0 / cached as f64
    );

    let counts = store.counts().expect("the memory store counts");
    assert_eq!(
        (counts.sessions, counts.revocations),
        (Some(n), n),
        "entries evicted"
    );
    println!("{n} entries of each kind, store.capacity = {n}");
    for (kind, kib) in rows {
        println!(
            "{kind}: +{kib} KiB RSS, {:.0} bytes per entry",
            kib as f64 * 1024.0 / n as f64
        );
    }
    println!("process VmRSS now: {} KiB", rss_kib());
}

/// RSS growth since `base`, once the caches have applied every insert.
fn measure(store: &Store, base: u64) -> u64 {
    store.counts();
    rss_kib().saturating_sub(base)
}

fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS")
}

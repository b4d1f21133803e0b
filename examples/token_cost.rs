//! What minting and verifying a token cost, in instructions: run it under
//! callgrind twice, with N operations and with none, and divide the
//! difference by N (the setup, the same in both runs, cancels out).
//!
//! ```sh
//! cargo build --release --example token_cost
//! for n in 0 2000; do
//!   valgrind --tool=callgrind --callgrind-out-file=/dev/null \
//!     target/release/examples/token_cost HS256 cold $n 2>&1 | grep refs
//! done
//! ```
//!
//! Algorithms: HS256, ES256, EdDSA (the keys in tests/fixtures/keys).
//! Operations: `cold` (a verification that skips the verified-token cache:
//! what the first request with a token costs), `cached` (a verification
//! served from the cache: what every later request costs), `forged` (the
//! same token with another signature, refused: what each forged token
//! costs, as failures are not cached), `mint` (what a login signs).

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use wxgate::auth::token::Keys;

/// Any clock inside the token's life will do: the run is deterministic.
const NOW: u64 = 1_800_000_000;

fn main() {
    let mut args = std::env::args().skip(1);
    let usage = "usage: token_cost HS256|ES256|EdDSA cold|cached|forged|mint N";
    let algorithm = args.next().expect(usage);
    let operation = args.next().expect(usage);
    let n: u32 = args.next().and_then(|n| n.parse().ok()).expect(usage);

    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/keys");
    let key = match algorithm.as_str() {
        "HS256" => "secret = \"0123456789abcdef0123456789abcdef\"".to_owned(),
        "ES256" | "EdDSA" => {
            let file = if algorithm == "ES256" {
                "es256.pem"
            } else {
                "ed25519.pem"
            };
            format!(
                "algorithm = \"{algorithm}\"\nprivate_key_file = \"{}\"",
                fixtures.join(file).display()
            )
        }
        _ => panic!("{usage}"),
    };
    let toml = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\n\
         [[apps]]\nappid = \"wxapp1\"\nsecret = \"s\"\n\
         [token]\n[[token.keys]]\nid = \"k1\"\n{key}\n"
    );
    let config =
        wxgate::Config::parse_with_env(&toml, Path::new("cost.toml"), Some(HashMap::new()))
            .expect("a valid config");
    let keys = Keys::new(&config.token, config.appids());
    let ttl = Duration::from_secs(600);
    let (token, _) = keys.mint("o-user", "wxapp1", None, ttl, NOW).expect("mint");
    // In the cache from here on, in every run.
    keys.verify(&token, NOW).expect("the token verifies");
    let (input, signature) = token.rsplit_once('.').expect("three segments");
    let other = if signature.starts_with('A') { 'B' } else { 'A' };
    let forged = format!("{input}.{other}{}", &signature[1..]);

    for _ in 0..n {
        match operation.as_str() {
            "cold" => {
                std::hint::black_box(keys.verify_uncached(&token, NOW).expect("verifies"));
            }
            "cached" => {
                std::hint::black_box(keys.verify(&token, NOW).expect("verifies"));
            }
            "forged" => {
                std::hint::black_box(keys.verify(&forged, NOW).expect_err("refused"));
            }
            "mint" => {
                std::hint::black_box(keys.mint("o-user", "wxapp1", None, ttl, NOW).expect("mint"));
            }
            _ => panic!("{usage}"),
        }
    }
}

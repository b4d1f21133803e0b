//! Replays every input kept under `fuzz/regressions/<target>/` (crashes the
//! fuzzers found, now fixed, and hand-made seeds for the attacks they cover)
//! through the same checks the `cargo fuzz` targets run, so a regression
//! fails the normal `cargo test`.

use std::path::Path;

fn replay(target: &str, check: fn(&[u8])) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/regressions")
        .join(target);
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no inputs in {}", dir.display());
    for file in files {
        let data = std::fs::read(&file).unwrap();
        let outcome = std::panic::catch_unwind(|| check(&data));
        assert!(outcome.is_ok(), "{} fails its check", file.display());
    }
}

#[test]
fn path_normalize_inputs() {
    replay("path_normalize", wxgate::fuzzing::path_normalize);
}

#[test]
fn token_verify_inputs() {
    replay("token_verify", wxgate::fuzzing::token_verify);
}

#[test]
fn config_parse_inputs() {
    replay("config_parse", wxgate::fuzzing::config_parse);
}

#[test]
fn wechat_answer_inputs() {
    replay("wechat_answer", wxgate::fuzzing::wechat_answer);
}

/// The signed-input mode of the token target really reaches the claims: a
/// well-formed token signed with the fuzz key verifies.
#[test]
fn token_target_reaches_claims() {
    let token = wxgate::fuzzing::sign_fuzz_token(
        br#"{"alg":"HS256","kid":"k1","typ":"JWT"}"#,
        br#"{"iss":"wxgate","sub":"o1","aud":"wxfuzz0000000001","exp":1800000000,"jti":"j1"}"#,
    );
    let verified = wxgate::fuzzing::fuzz_keys()
        .verify_uncached(&token, wxgate::fuzzing::FUZZ_NOW)
        .expect("a well-formed signed token verifies");
    assert_eq!(verified.openid_str(), "o1");
    let mut data = vec![0u8];
    data.extend_from_slice(token.as_bytes());
    wxgate::fuzzing::token_verify(&data);
}

/// The seeds are not all refusals: the minimal config loads, so the target
/// reaches minting and routing.
#[test]
fn the_minimal_config_seed_loads() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/regressions/config_parse");
    let text = std::fs::read_to_string(dir.join("minimal")).unwrap();
    let env = std::collections::HashMap::from([("FUZZ".to_owned(), "x".repeat(40))]);
    wxgate::Config::parse_with_env(&text, &dir.join("minimal.toml"), Some(env.clone()))
        .expect("the minimal seed is a valid config");
    let huge = std::fs::read_to_string(dir.join("huge-ttl")).unwrap();
    let err = wxgate::Config::parse_with_env(&huge, &dir.join("huge.toml"), Some(env))
        .expect_err("a ttl that overflows the clock is refused");
    assert!(err.to_string().contains("token.ttl"), "{err}");
}

#[test]
fn upstream_answer_inputs() {
    replay("upstream_answer", wxgate::fuzzing::upstream_answer);
}

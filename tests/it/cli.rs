//! The binary itself: exit codes, `check`, `token`, real signals.

use std::path::Path;
use std::process::Command;

use crate::common::process::*;
use crate::common::*;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;

/// Runs `wxgate ARGS CONFIG`, asserts exit 0 (showing stderr if not), returns stdout.
fn stdout_of_success(args: &[&str], config: &Path) -> String {
    let out = Command::new(BIN).args(args).arg(config).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    String::from_utf8(out.stdout).unwrap()
}

/// Runs `wxgate check --config CONFIG`, asserts exit 2, returns stderr.
fn stderr_of_refused_check(config: &Path) -> String {
    let out = Command::new(BIN)
        .args(["check", "--config"])
        .arg(config)
        .env_remove("WXGATE_CONFIG")
        .output()
        .unwrap();
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert_eq!(out.status.code(), Some(2), "{}: {stderr}", config.display());
    stderr
}

fn run_config(upstream: &str) -> String {
    base_config(upstream, &nowhere())
}

#[test]
fn check_prints_the_route_table_and_exits_0() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_config(dir.path(), &run_config("http://127.0.0.1:9000"));
    let text = stdout_of_success(&["check", "--config"], &path);
    assert!(text.contains("is valid"), "{text}");
    assert!(
        text.lines()
            .any(|l| l.starts_with("/public ") && l.contains("none")),
        "{text}"
    );
    assert!(
        text.lines()
            .any(|l| l.starts_with("/api ") && l.contains("required")),
        "{text}"
    );
    assert!(!text.contains(APP_SECRET) && !text.contains(JWT_SECRET));
}

#[test]
fn a_bad_config_exits_2_naming_file_and_key_without_the_secret() {
    let dir = tempfile::tempdir().unwrap();
    let text = run_config("http://127.0.0.1:9000").edit(JWT_SECRET, "short-secret-value");
    let path = write_config(dir.path(), &text);
    for args in [&["check"][..], &[][..], &["token", "--openid", "o"][..]] {
        let out = Command::new(BIN)
            .args(args)
            .arg("--config")
            .arg(&path)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = String::from_utf8(out.stderr).unwrap();
        assert!(
            err.contains(&path.display().to_string()) && err.contains("token.keys.secret"),
            "{err}"
        );
        assert!(!err.contains("short-secret-value"), "{err}");
    }
    // The issue's case: an unquoted 32-digit secret (read as an i128).
    let digits = "12345678901234567890123456789012";
    let text = run_config("http://127.0.0.1:9000").edit(&format!("\"{JWT_SECRET}\""), digits);
    assert!(text.contains(&format!("secret = {digits}")));
    let path = write_config(dir.path(), &text);
    let err = stderr_of_refused_check(&path);
    assert!(err.contains("token.keys.secret"), "{err}");
    assert!(!err.contains(&digits[..8]), "{err}");
    let missing = Command::new(BIN)
        .args(["check", "--config", "/nonexistent/wxgate.toml"])
        .output()
        .unwrap();
    assert_eq!(missing.status.code(), Some(2));
    let usage = Command::new(BIN).arg("--no-such-flag").output().unwrap();
    assert_eq!(usage.status.code(), Some(2));
}

/// `wxgate check` on every invalid fixture: exit 2, and stderr names the file
/// and carries the fixture's expected message (which names the key).
#[test]
fn check_exits_2_on_every_invalid_fixture() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/config/invalid");
    let mut checked = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "toml") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        let expect = text
            .lines()
            .next()
            .unwrap()
            .strip_prefix("# expect: ")
            .unwrap();
        let stderr = stderr_of_refused_check(&path);
        assert!(
            stderr.contains(expect) && stderr.contains(&path.display().to_string()),
            "{}: {stderr}",
            path.display()
        );
        checked += 1;
    }
    assert!(checked > 50, "{checked} fixtures");
}

#[test]
fn check_validates_the_redis_store_without_connecting() {
    let dir = tempfile::tempdir().unwrap();
    // A TEST-NET address nothing answers on: a connection attempt would hang.
    let store = "\n[store]\nbackend = \"redis\"\n\
                 url = \"redis://:url-password-do-not-leak@192.0.2.1:6379/0\"\n";
    let key = "encryption_key = \"c3RvcmUta2V5LWRvLW5vdC1sZWFrLTAxMjM0NTY3ODk=\"\n";
    let good = format!("{}{store}{key}", run_config("http://127.0.0.1:9000"));
    let path = write_config(dir.path(), &good);
    let started = std::time::Instant::now();
    let text = stdout_of_success(&["check", "--config"], &path);
    assert!(text.contains("is valid"), "{text}");
    assert!(started.elapsed() < std::time::Duration::from_secs(5));
    assert!(!text.contains("url-password-do-not-leak"), "{text}");

    // No encryption key: refused, naming the key, never echoing the URL.
    let path = write_config(dir.path(), &good.edit(key, ""));
    let err = stderr_of_refused_check(&path);
    assert!(err.contains("store.encryption_key"), "{err}");
    assert!(!err.contains("url-password-do-not-leak"), "{err}");
}

#[test]
fn config_path_falls_back_to_the_environment() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_config(dir.path(), &run_config("http://127.0.0.1:9000"));
    let out = Command::new(BIN)
        .arg("check")
        .env("WXGATE_CONFIG", &path)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    let version = Command::new(BIN).arg("--version").output().unwrap();
    assert!(String::from_utf8(version.stdout)
        .unwrap()
        .contains(env!("CARGO_PKG_VERSION")));
}

#[test]
fn token_prints_a_token_the_gateway_accepts() {
    let dir = tempfile::tempdir().unwrap();
    let text = run_config("http://127.0.0.1:9000");
    let path = write_config(dir.path(), &text);
    let args = [
        "token",
        "--openid",
        "o-cli",
        "--unionid",
        "u-cli",
        "--ttl",
        "10m",
        "--config",
    ];
    let token = stdout_of_success(&args, &path).trim().to_owned();
    let config = wxgate::Config::parse_with_env(&text, &path, Some(Default::default())).unwrap();
    let keys = wxgate::auth::token::Keys::new(&config.token, config.appids());
    let now = wxgate::auth::token::now();
    let verified = keys.verify(&token, now).unwrap();
    assert_eq!(
        (
            verified.openid_str(),
            verified.appid_str(),
            verified.unionid_str()
        ),
        ("o-cli", APPID, Some("u-cli"))
    );
    assert!((now + 595..=now + 600).contains(&verified.exp));
    let bad = Command::new(BIN)
        .args(["token", "--openid", "o", "--appid", "wxother", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(2));
}

#[test]
fn token_ttl_has_token_ttls_bound() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_config(dir.path(), &run_config("http://127.0.0.1:9000"));
    for (ttl, code) in [("20y", 2), ("31d", 2), ("0s", 2), ("30d", 0)] {
        let out = Command::new(BIN)
            .args(["token", "--openid", "o", "--ttl", ttl, "--config"])
            .arg(&path)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(code), "--ttl {ttl}: {stderr}");
        assert_eq!(out.stdout.is_empty(), code != 0, "--ttl {ttl}");
        if code != 0 {
            assert!(stderr.contains("--ttl must be at"), "{stderr}");
        }
    }
}

#[test]
fn a_listen_address_in_use_exits_1() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let text = run_config("http://127.0.0.1:9000").replacen(
        "listen = \"127.0.0.1:0\"",
        &format!("listen = \"{}\"", taken.local_addr().unwrap()),
        1,
    );
    let path = write_config(dir.path(), &text);
    let out = Command::new(BIN)
        .arg("--config")
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        stderr.matches("cannot listen").count(),
        1,
        "said once: {stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_in_flight_requests_then_exits_0() {
    let up = upstream::Upstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    let path = write_config(dir.path(), &run_config(&up.url()));
    let mut proc = Proc::start(&path);
    let (listen, admin) = proc.addresses();
    let http = client();
    assert_eq!(
        status_of_get(&http, &format!("http://{admin}/readyz")).await,
        200
    );

    let in_flight = tokio::spawn({
        let http = http.clone();
        let url = format!("http://{listen}/public/hold");
        async move { http.get(url).send().await.map(|r| r.status().as_u16()) }
    });
    up.next_request().await; // the held request reached the upstream
    proc.signal("TERM");
    proc.wait_for("draining");
    assert_eq!(
        status_of_get(&http, &format!("http://{admin}/readyz")).await,
        503
    );
    assert!(
        tokio::net::TcpStream::connect(&listen).await.is_err(),
        "stopped accepting"
    );
    assert!(proc.is_running(), "waits for the in-flight request");

    up.release_hold();
    assert_eq!(in_flight.await.unwrap().unwrap(), 200);
    assert_eq!(
        tokio::task::spawn_blocking(move || proc.wait_exit())
            .await
            .unwrap(),
        0
    );
}

/// The base config for `up` in a temporary file, served by the binary:
/// (dir, config text, its path, the process, its main address).
fn serve_file(
    up: &upstream::Upstream,
) -> (tempfile::TempDir, String, std::path::PathBuf, Proc, String) {
    let dir = tempfile::tempdir().unwrap();
    let text = run_config(&up.url());
    let path = write_config(dir.path(), &text);
    let mut proc = Proc::start(&path);
    let (listen, _) = proc.addresses();
    (dir, text, path, proc, listen)
}

#[test]
fn sigint_exits_0() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_config(dir.path(), &run_config(&nowhere()));
    let mut proc = Proc::start(&path);
    proc.addresses();
    proc.signal("INT");
    assert_eq!(proc.wait_exit(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_and_a_bad_file_keeps_the_running_config() {
    let up = upstream::Upstream::start().await;
    let (_dir, text, path, mut proc, listen) = serve_file(&up);
    let http = client();
    let get = |p: &str| http.get(format!("http://{listen}{p}")).send();
    assert_eq!(get("/api/x").await.unwrap().status(), 401);

    // /api becomes public.
    std::fs::write(&path, text.edit("auth = \"required\"", "auth = \"none\"")).unwrap();
    proc.signal("HUP");
    proc.wait_for("config reloaded");
    assert_eq!(get("/api/x").await.unwrap().status(), 200);

    // A broken file is reported; /api stays public.
    std::fs::write(&path, "[server]\nlisten = 5\n").unwrap();
    proc.signal("HUP");
    let line = proc.wait_for("config reload failed");
    assert!(line.contains("server.listen"), "{line}");
    assert_eq!(get("/api/x").await.unwrap().status(), 200);
    proc.signal("TERM");
    assert_eq!(
        tokio::task::spawn_blocking(move || proc.wait_exit())
            .await
            .unwrap(),
        0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_rotates_signing_keys_and_old_tokens_last_until_their_key_goes() {
    let up = upstream::Upstream::start().await;
    let (_dir, text, path, mut proc, listen) = serve_file(&up);
    let http = client();
    let api = |token: String| {
        http.get(format!("http://{listen}/api/x"))
            .bearer_auth(token)
            .send()
    };
    let mint = || stdout_of_success(&["token", "--openid", "o-1", "--config"], &path);
    let old = mint().trim().to_owned();
    assert_eq!(api(old.clone()).await.unwrap().status(), 200);

    let hs256 = format!("[[token.keys]]\nid = \"k1\"\nsecret = \"{JWT_SECRET}\"\n");
    let es256 = format!(
        "[[token.keys]]\nid = \"k2\"\nalgorithm = \"ES256\"\nprivate_key_file = \"{}/tests/fixtures/keys/es256.pem\"\n",
        env!("CARGO_MANIFEST_DIR")
    );
    let rotate = |keys: &str| std::fs::write(&path, text.replacen(&hs256, keys, 1)).unwrap();

    // k2 signs, k1 only verifies.
    rotate(&format!("{es256}{hs256}verify_only = true\n"));
    proc.signal("HUP");
    proc.wait_for("config reloaded");
    assert_eq!(api(old.clone()).await.unwrap().status(), 200);
    let new = mint().trim().to_owned();
    let header = new.split('.').next().unwrap();
    assert!(
        header.starts_with(&URL_SAFE_NO_PAD.encode(r#"{"typ":"JWT","alg":"ES256","kid":"k2"}"#)),
        "{header}"
    );
    assert_eq!(api(new.clone()).await.unwrap().status(), 200);
    let jwks = http
        .get(format!("http://{listen}/.well-known/jwks.json"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let jwks: serde_json::Value = serde_json::from_str(&jwks).unwrap();
    assert_eq!(jwks["keys"][0]["kid"], "k2");

    // A key file of the wrong kind is refused; the running keys stay.
    rotate(&es256.edit("es256.pem", "ed25519.pem"));
    proc.signal("HUP");
    let line = proc.wait_for("config reload failed");
    assert!(
        line.contains("key k2") && line.contains("Ed25519"),
        "{line}"
    );
    let pem = std::fs::read_to_string(format!(
        "{}/tests/fixtures/keys/ed25519.pem",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap();
    assert!(!line.contains(pem.lines().nth(1).unwrap()), "{line}");
    assert_eq!(api(old.clone()).await.unwrap().status(), 200);

    // k1 removed: its tokens are refused, k2's still pass.
    rotate(&es256);
    proc.signal("HUP");
    proc.wait_for("config reloaded");
    let refused = api(old).await.unwrap();
    assert_eq!(refused.status(), 401);
    let body: serde_json::Value = serde_json::from_str(&refused.text().await.unwrap()).unwrap();
    assert_eq!(body["error"], "invalid_token");
    assert_eq!(api(new).await.unwrap().status(), 200);
    proc.signal("TERM");
    assert_eq!(
        tokio::task::spawn_blocking(move || proc.wait_exit())
            .await
            .unwrap(),
        0
    );
}

async fn status_of_get(http: &reqwest::Client, url: &str) -> u16 {
    http.get(url).send().await.unwrap().status().as_u16()
}

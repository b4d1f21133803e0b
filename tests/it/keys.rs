//! Signing keys end to end: a rotation through reloads, ES256 and EdDSA
//! tokens checked against the published JWKS by an independent
//! implementation (RustCrypto's p256 and ed25519-dalek, used directly: not
//! ring, and not through the jsonwebtoken provider wxgate installs),
//! algorithm confusion over HTTP, and `wxgate keygen`.

use std::path::{Path, PathBuf};
use std::process::Command;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::common::fake_wechat::FakeWeChat;
use crate::common::login_flow::{decode, get, login, Answer};
use crate::common::upstream::Upstream;
use crate::common::*;
use wxgate::Config;

const BIN: &str = env!("CARGO_BIN_EXE_wxgate");

fn fixture_key(name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/keys")
        .join(name)
        .display()
        .to_string()
}

/// `[[token.keys]]` entries as TOML.
fn hs256(id: &str, verify_only: bool) -> String {
    format!(
        "[[token.keys]]\nid = \"{id}\"\nsecret = \"{JWT_SECRET}\"\nverify_only = {verify_only}\n"
    )
}

fn key_file(id: &str, alg: &str, file: &str, verify_only: bool) -> String {
    format!(
        "[[token.keys]]\nid = \"{id}\"\nalgorithm = \"{alg}\"\nprivate_key_file = \"{}\"\nverify_only = {verify_only}\n",
        fixture_key(file)
    )
}

/// A fake WeChat, an upstream, and a gateway served from a real config file
/// whose keys can be rewritten and reloaded.
struct Rig {
    fake: FakeWeChat,
    _up: Upstream,
    gw: TestGateway,
    base: String,
    path: PathBuf,
    _dir: tempfile::TempDir,
}

impl Rig {
    async fn start(keys: &str) -> Rig {
        let fake = FakeWeChat::start().await;
        fake.add_app(APPID, APP_SECRET);
        let up = Upstream::start().await;
        let base = base_config(&up.url(), &fake.base_url());
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("gateway.toml");
        let rig_path = path.clone();
        std::fs::write(&path, with_keys(&base, keys)).unwrap();
        let gw = TestGateway::start_config(Config::load(&path).unwrap()).await;
        Rig {
            fake,
            _up: up,
            gw,
            base,
            path: rig_path,
            _dir: dir,
        }
    }

    /// Rewrites the file with `keys` and reloads it, as SIGHUP does.
    fn rotate(&self, keys: &str) {
        std::fs::write(&self.path, with_keys(&self.base, keys)).unwrap();
        wxgate::ops::reload::from_file(&self.gw.gw).expect("reload");
    }

    async fn login(&self, openid: &str) -> String {
        let code = self.fake.mint_code(APPID, openid);
        let answer = login(&self.gw, serde_json::json!({ "code": code })).await;
        assert_eq!(answer.status, 200, "{}", answer.body);
        answer.token()
    }

    async fn api(&self, token: &str) -> Answer {
        get(&self.gw, "/api/x", Some(token)).await
    }

    async fn jwks(&self) -> serde_json::Value {
        let answer = get(&self.gw, "/.well-known/jwks.json", None).await;
        assert_eq!(answer.status, 200, "{}", answer.body);
        assert_eq!(answer.header("content-type"), Some("application/json"));
        assert_eq!(answer.header("cache-control"), Some("public, max-age=300"));
        answer.json()
    }
}

/// The base config with its one key replaced by `keys`.
fn with_keys(base: &str, keys: &str) -> String {
    let original = format!("[[token.keys]]\nid = \"k1\"\nsecret = \"{JWT_SECRET}\"\n");
    assert!(base.contains(&original));
    base.replacen(&original, keys, 1)
}

fn kids(jwks: &serde_json::Value) -> Vec<String> {
    jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kid"].as_str().unwrap().to_owned())
        .collect()
}

/// Verifies `token` with the JWK named by its `kid`, as another service
/// would: the JWK read by hand, the signature checked by RustCrypto's p256
/// (ES256) or ed25519-dalek (EdDSA), then `iss`, `aud` and `exp`.
fn verify_independently(
    jwks: &serde_json::Value,
    token: &str,
) -> Result<serde_json::Value, String> {
    use p256::ecdsa::signature::Verifier as _;

    let b64 = |part: &str| URL_SAFE_NO_PAD.decode(part).map_err(|e| e.to_string());
    let json = |bytes: Vec<u8>| {
        serde_json::from_slice::<serde_json::Value>(&bytes).map_err(|e| e.to_string())
    };
    let parts: Vec<&str> = token.split('.').collect();
    let [header, payload, signature] = parts[..] else {
        return Err("not three segments".into());
    };
    let (header, claims, signature) = (json(b64(header)?)?, json(b64(payload)?)?, b64(signature)?);
    let kid = header["kid"].as_str().ok_or("no kid")?;
    let jwk = jwks["keys"]
        .as_array()
        .ok_or("no keys")?
        .iter()
        .find(|k| k["kid"] == kid)
        .ok_or("kid not in the JWKS")?;
    let field = |name: &str| b64(jwk[name].as_str().ok_or(format!("no {name}"))?);
    if header["alg"] != jwk["alg"] {
        return Err(format!("alg {} on a {} key", header["alg"], jwk["alg"]));
    }
    let input = token.rsplit_once('.').unwrap().0.as_bytes();
    let checked = match (
        jwk["kty"].as_str(),
        jwk["crv"].as_str(),
        jwk["alg"].as_str(),
    ) {
        (Some("EC"), Some("P-256"), Some("ES256")) => {
            let point = [&[4u8][..], &field("x")?, &field("y")?].concat();
            let key =
                p256::ecdsa::VerifyingKey::from_sec1_bytes(&point).map_err(|e| e.to_string())?;
            let signature =
                p256::ecdsa::Signature::from_slice(&signature).map_err(|e| e.to_string())?;
            key.verify(input, &signature).map_err(|e| e.to_string())
        }
        (Some("OKP"), Some("Ed25519"), Some("EdDSA")) => {
            let x: [u8; 32] = field("x")?.try_into().map_err(|_| "x is not 32 bytes")?;
            let key = ed25519_dalek::VerifyingKey::from_bytes(&x).map_err(|e| e.to_string())?;
            let signature =
                ed25519_dalek::Signature::from_slice(&signature).map_err(|e| e.to_string())?;
            key.verify_strict(input, &signature)
                .map_err(|e| e.to_string())
        }
        other => return Err(format!("unexpected key {other:?}")),
    };
    checked.map_err(|e| format!("bad signature: {e}"))?;
    if claims["iss"] != "wxgate" || claims["aud"] != APPID {
        return Err(format!("wrong iss or aud: {claims}"));
    }
    let exp = claims["exp"].as_u64().ok_or("no exp")?;
    if exp <= wxgate::auth::token::now() {
        return Err("expired".into());
    }
    Ok(claims)
}

#[tokio::test]
async fn rotation_hs256_to_es256_keeps_old_tokens_until_the_key_is_removed() {
    let rig = Rig::start(&hs256("k1", false)).await;
    assert_eq!(rig.jwks().await, serde_json::json!({"keys": []}));
    let old = rig.login("o-old").await;
    assert_eq!(decode(&old).0["kid"], "k1");
    assert_eq!(rig.api(&old).await.status, 200);

    // Step 1: k2 published but not signing yet.
    rig.rotate(&format!(
        "{}{}",
        hs256("k1", false),
        key_file("k2", "ES256", "es256.pem", true)
    ));
    assert_eq!(kids(&rig.jwks().await), ["k2"]);
    assert_eq!(decode(&rig.login("o-mid").await).0["kid"], "k1");

    // Step 2: k2 signs, k1 only verifies.
    rig.rotate(&format!(
        "{}{}",
        key_file("k2", "ES256", "es256.pem", false),
        hs256("k1", true)
    ));
    assert_eq!(rig.api(&old).await.status, 200, "old tokens keep working");
    let new = rig.login("o-new").await;
    let (header, _) = decode(&new);
    assert_eq!(
        (header["kid"].as_str(), header["alg"].as_str()),
        (Some("k2"), Some("ES256"))
    );
    assert_eq!(rig.api(&new).await.status, 200);
    let claims = verify_independently(&rig.jwks().await, &new).unwrap();
    assert_eq!(claims["sub"], "o-new");

    // Step 3: after the old tokens' ttl, k1 goes.
    rig.rotate(&key_file("k2", "ES256", "es256.pem", false));
    rig.api(&old).await.assert_error(401, "invalid_token");
    assert_eq!(rig.api(&new).await.status, 200);
    assert_eq!(kids(&rig.jwks().await), ["k2"]);
}

#[tokio::test]
async fn jwks_verifies_es256_and_eddsa_tokens_independently() {
    let rig = Rig::start(&format!(
        "{}{}",
        key_file("ec", "ES256", "es256.pem", false),
        key_file("ed", "EdDSA", "ed25519.pem", true)
    ))
    .await;
    let jwks = rig.jwks().await;
    assert_eq!(kids(&jwks), ["ec", "ed"]);
    for jwk in jwks["keys"].as_array().unwrap() {
        assert_eq!(jwk["use"], "sig");
        assert!(jwk.get("d").is_none(), "no private part: {jwk}");
    }
    let es = rig.login("o-es").await;
    assert_eq!(verify_independently(&jwks, &es).unwrap()["sub"], "o-es");
    // The independent check can fail: the same token under the other key.
    let mut swapped = jwks.clone();
    swapped["keys"][0]["x"] = jwks["keys"][1]["x"].clone();
    swapped["keys"][0]["kty"] = "OKP".into();
    swapped["keys"][0]["crv"] = "Ed25519".into();
    swapped["keys"][0]["alg"] = "EdDSA".into();
    assert!(verify_independently(&swapped, &es).is_err());

    // EdDSA signs after a reload; the JWKS still lists both.
    rig.rotate(&format!(
        "{}{}",
        key_file("ed", "EdDSA", "ed25519.pem", false),
        key_file("ec", "ES256", "es256.pem", true)
    ));
    let jwks = rig.jwks().await;
    let ed = rig.login("o-ed").await;
    assert_eq!(decode(&ed).0["alg"], "EdDSA");
    assert_eq!(verify_independently(&jwks, &ed).unwrap()["sub"], "o-ed");
    assert_eq!(rig.api(&ed).await.status, 200);
    assert_eq!(rig.api(&es).await.status, 200);

    // Only GET and HEAD; HEAD has the headers and no body.
    let head = raw_request(rig.gw.addr, "HEAD", "/.well-known/jwks.json", &[]).await;
    assert_eq!(head.status, 200);
    assert_eq!(head.header("cache-control"), Some("public, max-age=300"));
    assert_eq!(head.body, "");
    let post = client()
        .post(rig.gw.url("/.well-known/jwks.json"))
        .send()
        .await
        .unwrap();
    Answer::read(post)
        .await
        .assert_error(405, "method_not_allowed");
}

#[tokio::test]
async fn hs256_signed_with_the_published_public_key_is_refused() {
    let rig = Rig::start(&key_file("ec", "ES256", "es256.pem", false)).await;
    let good = rig.login("o-user").await;
    let claims = good.split('.').nth(1).unwrap().to_owned();
    let jwk = &rig.jwks().await["keys"][0];
    let pem = std::fs::read(fixture_key("es256.pub.pem")).unwrap();
    let raw_x = URL_SAFE_NO_PAD.decode(jwk["x"].as_str().unwrap()).unwrap();
    for (alg, secret) in [("HS256", pem.as_slice()), ("HS256", &raw_x), ("none", b"")] {
        let header = URL_SAFE_NO_PAD.encode(format!(r#"{{"alg":"{alg}","typ":"JWT","kid":"ec"}}"#));
        let input = format!("{header}.{claims}");
        let sig = if secret.is_empty() {
            String::new()
        } else {
            let mut mac = Hmac::<Sha256>::new_from_slice(secret).unwrap();
            mac.update(input.as_bytes());
            URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
        };
        rig.api(&format!("{input}.{sig}"))
            .await
            .assert_error(401, "invalid_token");
    }
    assert_eq!(rig.api(&good).await.status, 200);
}

fn run(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(BIN).args(args).output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

#[tokio::test]
async fn keygen_output_loads_signs_and_is_listed_without_material() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    for (flag, alg) in [("es256", "ES256"), ("eddsa", "EdDSA")] {
        let out = dir.path().join(format!("{flag}.pem"));
        let out_s = out.display().to_string();
        let (code, snippet, stderr) = run(&[
            "keygen",
            "--algorithm",
            flag,
            "--out",
            &out_s,
            "--id",
            "fresh",
        ]);
        assert_eq!(code, 0, "{stderr}");
        let private = std::fs::read_to_string(&out).unwrap();
        assert!(private.starts_with("-----BEGIN PRIVATE KEY-----"));
        let mode = std::fs::metadata(&out).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let public = std::fs::read_to_string(dir.path().join(format!("{flag}.pub.pem"))).unwrap();
        assert!(public.starts_with("-----BEGIN PUBLIC KEY-----"));
        assert!(stderr.contains(&public), "the public key is shown");
        let body_line = private.lines().nth(1).unwrap();
        assert!(!snippet.contains(body_line) && !stderr.contains(body_line));

        // Never over an existing key without --force.
        let (code, _, stderr) = run(&["keygen", "--algorithm", flag, "--out", &out_s]);
        assert_eq!(code, 2, "{stderr}");
        assert_eq!(std::fs::read_to_string(&out).unwrap(), private);

        // The printed entry, pasted into a config, loads and signs.
        assert!(
            snippet.contains(&format!("algorithm = \"{alg}\"")),
            "{snippet}"
        );
        let text = with_keys(
            &base_config(&nowhere(), &nowhere()),
            &format!("{snippet}{}", hs256("k1", true)),
        );
        let config_path = dir.path().join("gateway.toml");
        std::fs::write(&config_path, &text).unwrap();
        let config_s = config_path.display().to_string();
        let (code, listing, _) = run(&["check", "--config", &config_s]);
        assert_eq!(code, 0);
        assert!(
            listing.contains(&format!("key fresh {alg} signs\n")),
            "{listing}"
        );
        assert!(
            listing.contains("key k1 HS256 verifies (verify_only)\n"),
            "{listing}"
        );
        assert!(!listing.contains(body_line) && !listing.contains(JWT_SECRET));
        let (code, token, stderr) = run(&["token", "--openid", "o-cli", "--config", &config_s]);
        assert_eq!(code, 0, "{stderr}");
        let gw = TestGateway::start_config(Config::load(&config_path).unwrap()).await;
        let jwks = get(&gw, "/.well-known/jwks.json", None).await.json();
        let claims = verify_independently(&jwks, token.trim()).unwrap();
        assert_eq!(claims["sub"], "o-cli");

        let (code, _, _) = run(&["keygen", "--algorithm", flag, "--out", &out_s, "--force"]);
        assert_eq!(code, 0);
        assert_ne!(std::fs::read_to_string(&out).unwrap(), private, "replaced");
    }
    let (code, _, _) = run(&["keygen", "--algorithm", "hs256", "--out", "x.pem"]);
    assert_eq!(code, 2);
}

#[test]
fn keygen_names_the_key_and_its_public_file_after_the_stem() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("k5.key");
    let (code, snippet, stderr) = run(&[
        "keygen",
        "--algorithm",
        "es256",
        "--out",
        &out.display().to_string(),
    ]);
    assert_eq!(code, 0, "{stderr}");
    assert!(snippet.contains("id = \"k5\"\n"), "{snippet}");
    assert!(dir.path().join("k5.pub.pem").exists(), "{stderr}");
    assert!(!dir.path().join("k5.key.pub.pem").exists());
}

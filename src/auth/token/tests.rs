use super::*;
use crate::config::{KeyConfig, KeyMaterial};
use crate::secret::Secret;
use base64::engine::general_purpose::{STANDARD, URL_SAFE};
use hmac::{Hmac, Mac};
use sha2::{Sha256, Sha384, Sha512};

type HmacSha256 = Hmac<Sha256>;

const SECRET: &str = "0123456789abcdef0123456789abcdef";
const OLD_SECRET: &str = "old-old-old-old-old-old-old-old-old!";
const NOW: u64 = 1_800_000_000;

fn config() -> TokenConfig {
    TokenConfig {
        algorithm: Algorithm::HS256,
        ttl: Duration::from_secs(7200),
        issuer: "wxgate".into(),
        leeway: Duration::from_secs(30),
        keys: vec![
            KeyConfig {
                id: "k2".into(),
                algorithm: Algorithm::HS256,
                material: KeyMaterial::Secret(Secret::new(SECRET)),
                verify_only: false,
            },
            KeyConfig {
                id: "k1".into(),
                algorithm: Algorithm::HS256,
                material: KeyMaterial::Secret(Secret::new(OLD_SECRET)),
                verify_only: true,
            },
        ],
    }
}

fn keys() -> Keys {
    Keys::new(&config(), ["wxapp1", "wxapp2"].into_iter())
}

fn b64(s: &str) -> String {
    URL_SAFE_NO_PAD.encode(s)
}

/// A token with exactly this header and payload JSON, HS256-signed with `secret`.
fn forge(header: &str, payload: &str, secret: &str) -> String {
    let signing_input = format!("{}.{}", b64(header), b64(payload));
    let mut mac = HmacSha256::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(signing_input.as_bytes());
    format!(
        "{signing_input}.{}",
        URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
    )
}

fn claims(extra: &str) -> String {
    let base = format!(
        r#""iss":"wxgate","sub":"o-user","aud":"wxapp1","iat":{NOW},"exp":{},"jti":"j1""#,
        NOW + 600
    );
    if extra.is_empty() {
        format!("{{{base}}}")
    } else {
        format!("{{{base},{extra}}}")
    }
}

const HEADER: &str = r#"{"alg":"HS256","typ":"JWT","kid":"k2"}"#;

fn refused(token: &str) -> TokenError {
    keys().verify(token, NOW).expect_err("must be refused")
}

#[test]
fn minted_tokens_verify_and_carry_the_claims() {
    let keys = keys();
    let (token, claims) = keys
        .mint(
            "o-user",
            "wxapp2",
            Some("u-1"),
            Duration::from_secs(60),
            NOW,
        )
        .unwrap();
    assert_eq!(claims.exp, NOW + 60);
    assert_eq!(claims.jti.len(), 22, "128 random bits, base64url");
    let v = keys.verify(&token, NOW).unwrap();
    assert_eq!(
        (v.openid_str(), v.appid_str(), v.unionid_str()),
        ("o-user", "wxapp2", Some("u-1"))
    );
    assert_eq!(v.jti, claims.jti);
    let header: serde_json::Value = serde_json::from_slice(
        &URL_SAFE_NO_PAD
            .decode(token.split('.').next().unwrap())
            .unwrap(),
    )
    .unwrap();
    assert_eq!(
        header,
        serde_json::json!({"alg": "HS256", "typ": "JWT", "kid": "k2"})
    );
    let (other, _) = keys
        .mint("o-user", "wxapp2", None, Duration::from_secs(60), NOW)
        .unwrap();
    assert_ne!(
        keys.verify(&other, NOW).unwrap().jti,
        v.jti,
        "jti is random"
    );
}

#[test]
fn forged_baseline_is_accepted() {
    // Guards every refusal below: the same token with one thing changed.
    assert!(keys()
        .verify(&forge(HEADER, &claims(""), SECRET), NOW)
        .is_ok());
}

#[test]
fn verify_only_keys_verify_but_never_sign() {
    let token = forge(r#"{"alg":"HS256","kid":"k1"}"#, &claims(""), OLD_SECRET);
    assert!(keys().verify(&token, NOW).is_ok());
    let (minted, _) = keys()
        .mint("o", "wxapp1", None, Duration::from_secs(60), NOW)
        .unwrap();
    assert!(minted.starts_with(&b64(r#"{"typ":"JWT","alg":"HS256","kid":"k2"}"#)));
}

#[test]
fn algorithm_comes_from_the_key() {
    for alg in [
        "none", "None", "NONE", "nOnE", "HS384", "HS512", "RS256", "ES256", "EdDSA", "hs256", "",
    ] {
        let header = format!(r#"{{"alg":"{alg}","kid":"k2"}}"#);
        assert_eq!(
            refused(&forge(&header, &claims(""), SECRET)),
            TokenError::Invalid("algorithm not allowed"),
            "{alg}"
        );
    }
    // alg none with an empty signature.
    let unsigned = format!(
        "{}.{}.",
        b64(r#"{"alg":"none","kid":"k2"}"#),
        b64(&claims(""))
    );
    assert!(matches!(refused(&unsigned), TokenError::Invalid(_)));
    // HS384 / HS512 really signed with the right secret.
    let input = format!(
        "{}.{}",
        b64(r#"{"alg":"HS384","kid":"k2"}"#),
        b64(&claims(""))
    );
    let mut mac = Hmac::<Sha384>::new_from_slice(SECRET.as_bytes()).unwrap();
    mac.update(input.as_bytes());
    let hs384 = format!(
        "{input}.{}",
        URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
    );
    assert!(matches!(refused(&hs384), TokenError::Invalid(_)));
    let input = format!(
        "{}.{}",
        b64(r#"{"alg":"HS512","kid":"k2"}"#),
        b64(&claims(""))
    );
    let mut mac = Hmac::<Sha512>::new_from_slice(SECRET.as_bytes()).unwrap();
    mac.update(input.as_bytes());
    let hs512 = format!(
        "{input}.{}",
        URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
    );
    assert!(matches!(refused(&hs512), TokenError::Invalid(_)));
}

#[test]
fn header_fields_wxgate_does_not_write_are_refused() {
    for header in [
        r#"{"alg":"HS256","kid":"k2","crit":["exp"]}"#,
        r#"{"alg":"HS256","kid":"k2","jku":"http://127.0.0.1:1/jwks"}"#,
        r#"{"alg":"HS256","kid":"k2","jwk":{"kty":"oct","k":"AA"}}"#,
        r#"{"alg":"HS256","kid":"k2","x5u":"http://127.0.0.1:1/x"}"#,
        r#"{"alg":"HS256","kid":"k2","x5c":["AA"]}"#,
        r#"{"alg":"HS256","kid":"k2","alg":"HS256"}"#,
        r#"{"alg":"HS256"}"#,
        r#"{"alg":"HS256","kid":"k3"}"#,
        r#"{"alg":"HS256","kid":"../../k2"}"#,
        r#"{"alg":"HS256","kid":"k2 "}"#,
        r#"{"alg":"HS256","kid":"K2"}"#,
        r#"{"alg":"HS256","kid":2}"#,
        r#"{"alg":"HS256","kid":"k2","typ":"at+jwt"}"#,
        r#"["alg","HS256"]"#,
        "not json",
    ] {
        assert!(
            matches!(
                refused(&forge(header, &claims(""), SECRET)),
                TokenError::Invalid(_)
            ),
            "{header}"
        );
    }
}

#[test]
fn signature_and_encoding() {
    let good = forge(HEADER, &claims(""), SECRET);
    let (input, sig) = good.rsplit_once('.').unwrap();
    let cases = [
        forge(HEADER, &claims(""), "another-secret-another-secret-000"),
        input.to_owned(),
        format!("{input}."),
        format!("{good}.extra"),
        format!("{good}."),
        format!("{input}.{}", &sig[..sig.len() - 1]),
        format!("{input}.{sig}="),
        format!("{input}.{}", sig.replace('_', "/").replace('-', "+") + "+/"),
        format!("{}.{}.{sig}", URL_SAFE.encode(HEADER), b64(&claims(""))),
        format!(
            "{}.{}.{sig}",
            STANDARD.encode(HEADER),
            STANDARD.encode(claims(""))
        ),
        format!(" {good}"),
        good.replace('.', ".."),
        String::new(),
        "...".into(),
        "a".repeat(MAX_TOKEN_BYTES + 1),
        format!("{good}{}", "A".repeat(1 << 20)),
    ];
    for token in cases {
        assert!(
            matches!(refused(&token), TokenError::Invalid(_)),
            "{token:.80}"
        );
    }
}

#[test]
fn claims_are_checked() {
    let leeway = 30;
    let cases: Vec<(String, TokenError)> = vec![
        (
            claims("").replace(r#""iss":"wxgate""#, r#""iss":"other""#),
            TokenError::Invalid("wrong issuer"),
        ),
        (
            claims("").replace(r#""iss":"wxgate","#, ""),
            TokenError::Invalid("wrong issuer"),
        ),
        (
            claims("").replace(r#""aud":"wxapp1""#, r#""aud":"wxother""#),
            TokenError::Invalid("unknown audience"),
        ),
        (
            claims("").replace(r#""aud":"wxapp1""#, r#""aud":["wxapp1"]"#),
            TokenError::Invalid("bad claims"),
        ),
        (
            claims("").replace(
                &format!(r#""exp":{}"#, NOW + 600),
                &format!(r#""exp":"{}""#, NOW + 600),
            ),
            TokenError::Invalid("bad claims"),
        ),
        (
            claims("").replace(&format!(r#","exp":{}"#, NOW + 600), ""),
            TokenError::Invalid("no exp"),
        ),
        (
            claims("").replace(
                &format!(r#""exp":{}"#, NOW + 600),
                &format!(r#""exp":{}"#, NOW - leeway - 1),
            ),
            TokenError::Expired,
        ),
        (
            claims("").replace(
                &format!(r#""iat":{NOW}"#),
                &format!(r#""iat":{}"#, NOW + leeway + 1),
            ),
            TokenError::Invalid("issued in the future"),
        ),
        (
            claims(&format!(r#""nbf":{}"#, NOW + leeway + 1)),
            TokenError::Invalid("not yet valid"),
        ),
        (
            claims("").replace(r#""sub":"o-user""#, r#""sub":"o\r\nX-WX-OpenID: admin""#),
            TokenError::Invalid("bad subject"),
        ),
        (
            claims("").replace(r#""sub":"o-user""#, r#""sub":"""#),
            TokenError::Invalid("bad subject"),
        ),
        (
            claims("").replace(r#""sub":"o-user","#, ""),
            TokenError::Invalid("bad subject"),
        ),
        (
            claims(r#""unionid":"u\nx""#),
            TokenError::Invalid("bad unionid"),
        ),
        (
            claims("").replace(r#","jti":"j1""#, ""),
            TokenError::Invalid("no jti"),
        ),
        (
            claims(r#""sub":"admin""#),
            TokenError::Invalid("bad claims"),
        ),
        (
            claims(r#""exp":99999999999"#),
            TokenError::Invalid("bad claims"),
        ),
    ];
    for (payload, expected) in cases {
        assert_eq!(
            refused(&forge(HEADER, &payload, SECRET)),
            expected,
            "{payload}"
        );
    }
    // Inside the leeway is still fine, both ways.
    let in_leeway = claims("")
        .replace(
            &format!(r#""exp":{}"#, NOW + 600),
            &format!(r#""exp":{}"#, NOW - leeway),
        )
        .replace(
            &format!(r#""iat":{NOW}"#),
            &format!(r#""iat":{}"#, NOW + leeway),
        );
    assert!(keys()
        .verify(&forge(HEADER, &in_leeway, SECRET), NOW)
        .is_ok());
    // Unknown claims are ignored.
    assert!(keys()
        .verify(&forge(HEADER, &claims(r#""scope":"x""#), SECRET), NOW)
        .is_ok());
}

#[test]
fn a_remembered_token_still_expires() {
    let keys = keys();
    let token = forge(HEADER, &claims(""), SECRET);
    let first = keys.verify(&token, NOW).unwrap();
    let again = keys.verify(&token, NOW + 1).unwrap();
    assert!(
        Arc::ptr_eq(&first, &again),
        "the second check is served from the cache"
    );
    let exp = NOW + 600;
    assert!(keys.verify(&token, exp + 30).is_ok(), "inside the leeway");
    assert_eq!(
        keys.verify(&token, exp + 31).unwrap_err(),
        TokenError::Expired
    );
    // Failures are not remembered: a bad token is checked in full every time.
    let bad = forge(HEADER, &claims(""), "another-secret-another-secret-000");
    assert!(keys.verify(&bad, NOW).is_err());
    keys.verified.run_pending_tasks();
    assert_eq!(keys.verified.entry_count(), 1);
}

//! Attacks on the token, each sent to a `required` route over a raw socket:
//! every one is 401 `invalid_token` and the upstream sees nothing. Claim
//! checks one by one (issuer, audience, expiry, `iat`, `nbf`, ids) are in
//! `src/token/tests.rs`; here is what an attacker would try first.

use std::time::Duration;

use crate::common::attack::*;
use crate::common::upstream::Upstream;
use crate::common::*;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;

/// Sends each token to the protected route; each must be refused and none
/// may reach the upstream.
async fn assert_all_refused(gw: &TestGateway, up: &Upstream, tokens: &[String]) {
    for token in tokens {
        let auth = bearer(token);
        let res = raw_request(gw.addr, "GET", "/api/x", &[("Authorization", &auth)]).await;
        let shown = &token[..token.len().min(120)];
        assert!(res.status == 401, "{shown}: {res:?}");
        assert_invalid_token(&res);
        assert!(!res.body.contains(token.as_str()), "{shown}: echoed");
    }
    assert_eq!(up.requests().len(), 0, "a refused token was proxied");
}

async fn setup() -> (Upstream, TestGateway) {
    let up = Upstream::start().await;
    let gw = gateway_with(&up, "").await;
    (up, gw)
}

/// The forged tokens are right in every way but the one under attack: this
/// control must pass, or the refusals below prove nothing.
#[tokio::test]
async fn control_a_forged_token_with_the_real_key_is_accepted() {
    let (up, gw) = setup().await;
    let token = forge(GOOD_HEADER, &good_claims(""));
    let auth = bearer(&token);
    let res = raw_request(gw.addr, "GET", "/api/x", &[("Authorization", &auth)]).await;
    assert_eq!(res.status, 200, "{res:?}");
    assert_eq!(up.last().unwrap().header("x-wx-openid"), Some("o-mallory"));
}

fn casings(word: &str) -> Vec<String> {
    // Every upper/lower combination of the letters.
    let letters: Vec<char> = word.chars().collect();
    (0..1u32 << letters.len())
        .map(|mask| {
            letters
                .iter()
                .enumerate()
                .map(|(i, c)| {
                    if mask & (1 << i) != 0 {
                        c.to_ascii_uppercase()
                    } else {
                        *c
                    }
                })
                .collect()
        })
        .collect()
}

#[tokio::test]
async fn alg_none_in_every_casing_is_refused_signed_or_not() {
    let (up, gw) = setup().await;
    let claims = good_claims("");
    let mut tokens = Vec::new();
    for alg in casings("none") {
        let header = format!(r#"{{"alg":"{alg}","typ":"JWT","kid":"k1"}}"#);
        let unsigned = format!("{}.{}.", b64(&header), b64(&claims));
        tokens.push(unsigned.clone());
        tokens.push(unsigned.trim_end_matches('.').to_owned());
        tokens.push(forge(&header, &claims));
    }
    assert_eq!(tokens.len(), 16 * 3);
    assert_all_refused(&gw, &up, &tokens).await;
}

#[tokio::test]
async fn other_hmac_strengths_with_the_right_secret_are_refused() {
    let (up, gw) = setup().await;
    let claims = good_claims("");
    let mut tokens = Vec::new();
    for (alg, bits) in [("HS384", "384"), ("HS512", "512"), ("hs256", "256")] {
        let header = format!(r#"{{"alg":"{alg}","typ":"JWT","kid":"k1"}}"#);
        tokens.push(forge_with(bits, &header, &claims, JWT_SECRET));
    }
    // HS256 signature under an HS512 header, and the reverse.
    tokens.push(forge_with(
        "256",
        r#"{"alg":"HS512","kid":"k1"}"#,
        &claims,
        JWT_SECRET,
    ));
    tokens.push(forge_with("512", GOOD_HEADER, &claims, JWT_SECRET));
    assert_all_refused(&gw, &up, &tokens).await;
}

#[tokio::test]
async fn asymmetric_algorithm_headers_are_refused() {
    // The classic confusion: an RS/ES header whose "signature" is an HMAC
    // under a key the attacker knows or guesses (here: the real one).
    let (up, gw) = setup().await;
    let claims = good_claims("");
    let tokens: Vec<String> = [
        "RS256", "RS512", "PS256", "ES256", "ES384", "ES512", "EdDSA", "ES256K", "",
    ]
    .iter()
    .map(|alg| forge(&format!(r#"{{"alg":"{alg}","kid":"k1"}}"#), &claims))
    .chain([forge(r#"{"kid":"k1"}"#, &claims)])
    .chain([forge(r#"{"alg":["HS256"],"kid":"k1"}"#, &claims)])
    .collect();
    assert_all_refused(&gw, &up, &tokens).await;
}

#[tokio::test]
async fn stripped_signatures_and_wrong_segment_counts_are_refused() {
    let (up, gw) = setup().await;
    let good = forge(GOOD_HEADER, &good_claims(""));
    let (input, sig) = good.rsplit_once('.').unwrap();
    let (h, p) = input.split_once('.').unwrap();
    // A last character that differs from the real one (both canonical).
    let other_last = if sig.ends_with('A') { 'Q' } else { 'A' };
    let tokens = vec![
        input.to_owned(),
        format!("{input}."),
        format!("{input}.."),
        format!("{good}."),
        format!("{good}.{sig}"),
        format!("{h}.{p}.{sig}.{sig}.{sig}"),
        format!("{h}..{sig}"),
        format!(".{p}.{sig}"),
        format!("{p}.{h}.{sig}"),
        format!("{h}.{p}.{}", &sig[..sig.len() - 1]),
        format!("{h}.{p}.{}{other_last}", &sig[..sig.len() - 1]),
        format!("{h}.{p}.{sig}{sig}"),
        "...".to_owned(),
        ".".to_owned(),
    ];
    assert_all_refused(&gw, &up, &tokens).await;
}

#[tokio::test]
async fn padding_other_alphabets_and_non_canonical_base64_are_refused() {
    let (up, gw) = setup().await;
    let claims = good_claims("");
    // A signature that has a character where the two alphabets differ.
    let good = (0..500)
        .map(|i| forge(GOOD_HEADER, &claims.replace("jti-attack", &format!("j{i}"))))
        .find(|t| t.rsplit('.').next().unwrap().contains(['-', '_']))
        .expect("some signature uses - or _");
    let (input, sig) = good.rsplit_once('.').unwrap();
    let (h, p) = input.split_once('.').unwrap();
    let standard_sig = STANDARD.encode(URL_SAFE_NO_PAD.decode(sig).unwrap());
    // 32 bytes: 43 characters, the last carrying 4 unused bits. Flipping
    // one of those decodes to the same bytes: a second spelling of a token.
    let last = sig.chars().last().unwrap();
    let alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let idx = alphabet.find(last).unwrap();
    let twin = alphabet.chars().nth(idx ^ 1).unwrap();
    let tokens = vec![
        format!("{input}.{sig}="),
        format!("{input}.{standard_sig}"),
        format!("{input}.{}", standard_sig.trim_end_matches('=')),
        format!("{h}=.{p}.{sig}"),
        format!("{h}.{p}==.{sig}"),
        format!("{}.{p}.{sig}", STANDARD.encode(GOOD_HEADER)),
        format!("{input}.{}{twin}", &sig[..sig.len() - 1]),
        format!("{input}. {sig}"),
        format!("{h}.{p}.{}%2D", &sig[..sig.len() - 1]),
        format!("{input}.{}", sig.replace(['-', '_'], "*")),
    ];
    assert_all_refused(&gw, &up, &tokens).await;
}

#[tokio::test]
async fn duplicate_json_keys_are_refused() {
    // Two parsers reading one token two ways is how signatures get bypassed:
    // wxgate refuses the ambiguity instead of picking a side.
    let (up, gw) = setup().await;
    let claims = good_claims("");
    let tokens = vec![
        forge(r#"{"alg":"HS256","kid":"k1","alg":"none"}"#, &claims),
        forge(r#"{"alg":"HS256","kid":"nope","kid":"k1"}"#, &claims),
        forge(GOOD_HEADER, &good_claims(r#""sub":"o-victim""#)),
        forge(GOOD_HEADER, &good_claims(r#""aud":"wxother""#)),
        forge(GOOD_HEADER, &good_claims(r#""exp":99999999999"#)),
        forge(GOOD_HEADER, &good_claims(r#""iss":"wxgate""#)),
    ];
    assert_all_refused(&gw, &up, &tokens).await;
}

#[tokio::test]
async fn type_confusion_in_claims_is_refused() {
    let (up, gw) = setup().await;
    let now = wxgate::auth::token::now();
    let c = |aud: &str, exp: &str, sub: &str| {
        format!(r#"{{"iss":"wxgate","sub":{sub},"aud":{aud},"iat":{now},"exp":{exp},"jti":"j"}}"#)
    };
    let aud = format!("\"{APPID}\"");
    let exp = (now + 600).to_string();
    let tokens: Vec<String> = [
        c(&format!("[{aud}]"), &exp, "\"o\""),
        c(&aud, &format!("\"{exp}\""), "\"o\""),
        c(&aud, "1e30", "\"o\""),
        c(&aud, "-1", "\"o\""),
        c(&aud, &format!("{exp}.5"), "\"o\""),
        c(&aud, "null", "\"o\""),
        c(&aud, &exp, "null"),
        c(&aud, &exp, "[\"o\"]"),
        c(&aud, &exp, "\"\""),
        c(&aud, &exp, "\"o\\r\\nX-WX-OpenID: admin\""),
        c(&aud, &exp, "\"o\\u0000\""),
        c(&aud, &exp, "\"o p\""),
        "[]".to_owned(),
        "null".to_owned(),
        "\"\"".to_owned(),
    ]
    .iter()
    .map(|claims| forge(GOOD_HEADER, claims))
    .collect();
    assert_all_refused(&gw, &up, &tokens).await;
}

#[tokio::test]
async fn crit_and_key_fetching_headers_are_refused_and_nothing_is_fetched() {
    let (up, gw) = setup().await;
    let bait = Bait::start().await;
    let claims = good_claims("");
    let jwk = format!(
        r#"{{"kty":"oct","k":"{}","kid":"k1"}}"#,
        b64("attacker-key-0123456789abcdef0123456789")
    );
    let headers = [
        r#"{"alg":"HS256","kid":"k1","crit":["exp"]}"#.to_owned(),
        r#"{"alg":"HS256","kid":"k1","crit":[]}"#.to_owned(),
        format!(
            r#"{{"alg":"HS256","kid":"k1","jku":"{}"}}"#,
            bait.url("/jwks")
        ),
        format!(
            r#"{{"alg":"HS256","kid":"k1","x5u":"{}"}}"#,
            bait.url("/x5u")
        ),
        format!(r#"{{"alg":"HS256","kid":"k1","jwk":{jwk}}}"#),
        r#"{"alg":"HS256","kid":"k1","x5c":["MIIB"]}"#.to_owned(),
        r#"{"alg":"HS256","kid":"k1","b64":false}"#.to_owned(),
        r#"{"alg":"HS256","kid":"k1","zip":"DEF"}"#.to_owned(),
        r#"{"alg":"HS256","kid":"k1","enc":"A128GCM"}"#.to_owned(),
    ];
    let mut tokens: Vec<String> = headers.iter().map(|h| forge(h, &claims)).collect();
    // Signed with the key the header itself offers.
    tokens.push(forge_with(
        "256",
        &format!(r#"{{"alg":"HS256","kid":"k1","jwk":{jwk}}}"#),
        &claims,
        "attacker-key-0123456789abcdef0123456789",
    ));
    assert_all_refused(&gw, &up, &tokens).await;
    assert_eq!(bait.hits(), 0, "the gateway fetched a key URL");

    // The bait counts: one connection of our own shows up.
    let _probe = tokio::net::TcpStream::connect(bait.addr).await.unwrap();
    eventually(Duration::from_secs(5), "the probe counted", || async {
        (bait.hits() > 0).then_some(())
    })
    .await;
    assert_eq!(bait.hits(), 1);
}

#[tokio::test]
async fn kid_tricks_are_refused() {
    let (up, gw) = setup().await;
    let claims = good_claims("");
    let tokens: Vec<String> = [
        "../../../../dev/null",
        "/etc/passwd",
        "k1/../k1",
        "./k1",
        "K1",
        " k1",
        "k1 ",
        "k1\\u0000",
        "k1\\n",
        "k1' OR '1'='1",
        "",
        "k1k1",
        "%6B1",
    ]
    .iter()
    .map(|kid| forge(&format!(r#"{{"alg":"HS256","kid":"{kid}"}}"#), &claims))
    .chain([
        forge(r#"{"alg":"HS256","kid":null}"#, &claims),
        forge(r#"{"alg":"HS256","kid":1}"#, &claims),
        forge(r#"{"alg":"HS256","kid":["k1"]}"#, &claims),
        forge(r#"{"alg":"HS256"}"#, &claims),
    ])
    .collect();
    assert_all_refused(&gw, &up, &tokens).await;
}

#[tokio::test]
async fn megabyte_tokens_are_refused_without_reaching_the_upstream() {
    let up = Upstream::start().await;
    // With the default head limit the parser refuses the head itself.
    let gw = gateway_with(&up, "").await;
    let huge = format!("{}.{}.x", "A".repeat(700_000), "B".repeat(300_000));
    let request = http_request("GET", "/api/x", &[("Authorization", &bearer(&huge))]);
    let answer = raw(gw.addr, &request).await;
    assert_eq!(
        status_of(&answer),
        431,
        "{}",
        &answer[..answer.len().min(200)]
    );

    // Allowed in by a 1 MiB head limit, the token itself is refused.
    let toml = base_config(&up.url(), &nowhere()).edit(
        "shutdown_grace = \"5s\"",
        "shutdown_grace = \"5s\"\nmax_header_bytes = 1048576",
    );
    let big = TestGateway::start(&toml).await;
    let near_mib = format!("{}.{}.x", "A".repeat(600_000), "B".repeat(400_000));
    let good_sig = forge(
        GOOD_HEADER,
        &good_claims(&format!(r#""pad":"{}""#, "p".repeat(650_000))),
    );
    assert_all_refused(&big, &up, &[near_mib, good_sig]).await;
}

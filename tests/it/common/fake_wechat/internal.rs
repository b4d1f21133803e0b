//! The fake's side of the internal API: the WeChat APIs wxgate calls on a backend's behalf.
//!
//! - `POST /cgi-bin/stable_token`: per app, the same token until a test rotates or expires it;
//!   `force_refresh` issues a new one (the old one keeps working, as at WeChat) and is counted.
//! - `GET /cgi-bin/token`: a token of its own family, counted (wxgate must never call it).
//! - Token-taking APIs answer 41001 to no token, 40014 to a malformed one, 42001 to an expired
//!   one and 40001 to any other that is not in force: `POST /wxa/msg_sec_check` (JSON, echoes
//!   the body and the query it saw) and `POST /wxa/getwxacodeunlimit` (a PNG, [`png_for`] the
//!   body); `GET /wxa/checksession` (0 for the user's current session_key, 87009 otherwise);
//!   `POST /wxa/business/getuserphonenumber` with single-use phone codes (40029 when reused).
//! - [`FakeWeChat::encrypted_data`] builds `encryptedData` + `iv` for a user's current
//!   session_key with its own AES-128-CBC.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use aes::cipher::{block_padding::Pkcs7, BlockEncryptMut, KeyIvInit};
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use tokio::sync::watch;

use super::{
    error_body, json_str, parse_query, random_bytes, FakeWeChat, Response, Shared, HTML_502,
};

const JSON: &str = "application/json; encoding=utf-8";

/// What [`serve`] decided for a request on one of these paths.
pub(super) enum Outcome {
    Answer(Response),
    Reset,
}

/// A misbehaviour for one request, queued with [`FakeWeChat::push_api_fault`] (token-taking
/// APIs) or [`FakeWeChat::push_token_fault`] (`stable_token`).
#[derive(Debug, Clone)]
pub enum ApiFault {
    /// Answer `{"errcode":N,...}` without looking at the token.
    Errcode(i64),
    /// Wait, then answer normally.
    Delay(Duration),
    /// Wait until the sender says `true` (see [`FakeWeChat::hold_stable_token`]), then answer.
    Hold(watch::Receiver<bool>),
    /// HTTP 502 with an HTML body.
    Http502Html,
    /// HTTP 200 `text/plain` with a body that is not JSON.
    NotJson,
    /// Reset the connection without answering.
    Reset,
    /// HTTP 302 to `/elsewhere` (the fake itself: a followed redirect would show as a call).
    Redirect,
}

/// One call to a token-taking API, as received.
#[derive(Debug, Clone)]
pub struct ApiCall {
    pub method: String,
    /// The raw query, `access_token` included.
    pub query: String,
    pub body: Vec<u8>,
    pub access_token: Option<String>,
}

#[derive(Default)]
pub(super) struct State {
    tokens: HashMap<String, AppTokens>,
    phone_codes: HashMap<String, PhoneCode>,
    api_faults: VecDeque<ApiFault>,
    token_faults: VecDeque<ApiFault>,
    calls: HashMap<String, Vec<ApiCall>>,
    /// Seconds each new token lives.
    token_life: Option<u64>,
    /// Phone answers carry this watermark appid instead of the code's.
    phone_watermark: Option<String>,
}

#[derive(Default)]
struct AppTokens {
    current: Option<String>,
    /// When `current` was issued, and its life in seconds.
    issued: Option<(tokio::time::Instant, u64)>,
    /// Refused with 40001: rotated away.
    rotated: HashSet<String>,
    /// Refused with 42001.
    expired: HashSet<String>,
    /// Still accepted for a while after a force refresh, as at WeChat.
    grace: HashSet<String>,
    /// From `/cgi-bin/token`.
    plain: HashSet<String>,
    stable_calls: usize,
    forced: usize,
}

struct PhoneCode {
    appid: String,
    pure: String,
    country: String,
    used: bool,
}

/// The PNG `getwxacodeunlimit` answers to a request body: a PNG signature, the body, and bytes
/// that are not UTF-8.
pub fn png_for(body: &[u8]) -> Vec<u8> {
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    png.extend_from_slice(body);
    png.extend_from_slice(&[0xff, 0x00, 0xfe, 0x80]);
    png
}

fn new_token() -> String {
    let hex: String = random_bytes::<24>()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("ACCESS_{hex}")
}

impl FakeWeChat {
    /// `stable_token` calls for `appid` so far (force refreshes included).
    pub fn stable_token_calls(&self, appid: &str) -> usize {
        let st = self.shared.lock();
        st.internal.tokens.get(appid).map_or(0, |t| t.stable_calls)
    }

    /// `stable_token` calls with `force_refresh: true` for `appid`.
    pub fn forced(&self, appid: &str) -> usize {
        let st = self.shared.lock();
        st.internal.tokens.get(appid).map_or(0, |t| t.forced)
    }

    /// `/cgi-bin/token` calls, for every app.
    pub fn plain_token_calls(&self) -> usize {
        self.api_calls("/cgi-bin/token").len()
    }

    /// The token in force for `appid`, if one was issued.
    pub fn current_token(&self, appid: &str) -> Option<String> {
        let st = self.shared.lock();
        st.internal.tokens.get(appid)?.current.clone()
    }

    /// Someone else took a new token: the one in force is refused with 40001 from now on, and
    /// `stable_token` hands out a new one.
    pub fn rotate_token(&self, appid: &str) {
        let mut st = self.shared.lock();
        let life = st.internal.token_life.unwrap_or(7200);
        let t = st.internal.tokens.entry(appid.to_owned()).or_default();
        if let Some(old) = t.current.replace(new_token()) {
            t.rotated.insert(old);
        }
        t.issued = Some((tokio::time::Instant::now(), life));
    }

    /// The token in force expires: refused with 42001; `stable_token` issues a new one.
    pub fn expire_token(&self, appid: &str) {
        let mut st = self.shared.lock();
        let t = st.internal.tokens.entry(appid.to_owned()).or_default();
        if let Some(old) = t.current.take() {
            t.expired.insert(old);
        }
    }

    /// `expires_in` of the tokens issued from now on (default 7200).
    pub fn set_token_life(&self, secs: u64) {
        self.shared.lock().internal.token_life = Some(secs);
    }

    pub fn push_api_fault(&self, fault: ApiFault) {
        self.shared.lock().internal.api_faults.push_back(fault);
    }

    pub fn push_token_fault(&self, fault: ApiFault) {
        self.shared.lock().internal.token_faults.push_back(fault);
    }

    /// Holds the next `stable_token` answer until the returned sender sends `true`.
    pub fn hold_stable_token(&self) -> watch::Sender<bool> {
        let (tx, rx) = watch::channel(false);
        self.push_token_fault(ApiFault::Hold(rx));
        tx
    }

    /// Every call received on `path` (e.g. `/wxa/msg_sec_check`), oldest first.
    pub fn api_calls(&self, path: &str) -> Vec<ApiCall> {
        let st = self.shared.lock();
        st.internal.calls.get(path).cloned().unwrap_or_default()
    }

    /// A getPhoneNumber code (single use) for a phone number of `appid`'s user.
    pub fn mint_phone_code(&self, appid: &str, country: &str, pure: &str) -> String {
        let code: String = random_bytes::<16>()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        self.shared.lock().internal.phone_codes.insert(
            code.clone(),
            PhoneCode {
                appid: appid.to_owned(),
                pure: pure.to_owned(),
                country: country.to_owned(),
                used: false,
            },
        );
        code
    }

    /// Phone answers name `appid` in their watermark (`None`: the code's own app).
    pub fn set_phone_watermark(&self, appid: Option<&str>) {
        self.shared.lock().internal.phone_watermark = appid.map(str::to_owned);
    }

    /// `encryptedData` and `iv` (base64) of `data` plus a watermark (`watermark_appid`,
    /// `timestamp`), encrypted with the user's current session_key, as `wx.getWeRunData`
    /// hands them to the client. Panics if the user does not exist.
    pub fn encrypted_data(
        &self,
        appid: &str,
        openid: &str,
        mut data: serde_json::Value,
        watermark_appid: &str,
        timestamp: u64,
    ) -> (String, String) {
        let key = self.session_key(appid, openid).expect("a user of the fake");
        data["watermark"] = serde_json::json!({"timestamp": timestamp, "appid": watermark_appid});
        encrypt(&key, &serde_json::to_vec(&data).unwrap())
    }
}

/// AES-128-CBC with PKCS#7 under `session_key` (base64) and a random iv: (data, iv) in base64.
pub fn encrypt(session_key: &str, plain: &[u8]) -> (String, String) {
    let key: [u8; 16] = STANDARD.decode(session_key).unwrap().try_into().unwrap();
    let iv = random_bytes::<16>();
    let mut buf = vec![0u8; plain.len() + 16];
    buf[..plain.len()].copy_from_slice(plain);
    let data = cbc::Encryptor::<aes::Aes128>::new(&key.into(), &iv.into())
        .encrypt_padded_mut::<Pkcs7>(&mut buf, plain.len())
        .unwrap();
    (STANDARD.encode(data), STANDARD.encode(iv))
}

/// lowercase hex of HMAC-SHA256(key = the session_key's text, message = "").
pub fn checksession_signature(session_key: &str) -> String {
    let mac = Hmac::<Sha256>::new_from_slice(session_key.as_bytes()).unwrap();
    mac.finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn json(body: String) -> Outcome {
    Outcome::Answer(Response {
        status: 200,
        reason: "OK",
        content_type: JSON,
        location: None,
        body: body.into_bytes(),
    })
}

fn errcode(code: i64) -> Outcome {
    json(error_body(code, false))
}

/// Answers a request on one of the internal API's WeChat paths; `None` for any other path.
pub(super) async fn serve(
    shared: &Arc<Shared>,
    method: &str,
    path: &str,
    query: &str,
    body: &[u8],
) -> Option<Outcome> {
    let token_api = match path {
        "/cgi-bin/stable_token" => false,
        "/cgi-bin/token"
        | "/wxa/msg_sec_check"
        | "/wxa/getwxacodeunlimit"
        | "/wxa/checksession"
        | "/wxa/business/getuserphonenumber" => true,
        _ => return None,
    };
    let params = parse_query(query);
    let fault = {
        let mut st = shared.lock();
        st.internal
            .calls
            .entry(path.to_owned())
            .or_default()
            .push(ApiCall {
                method: method.to_owned(),
                query: query.to_owned(),
                body: body.to_vec(),
                access_token: params.get("access_token").cloned(),
            });
        if token_api {
            st.internal.api_faults.pop_front()
        } else {
            st.internal.token_faults.pop_front()
        }
    };
    match fault {
        None => {}
        Some(ApiFault::Errcode(code)) => return Some(errcode(code)),
        Some(ApiFault::Delay(d)) => tokio::time::sleep(d).await,
        Some(ApiFault::Hold(mut rx)) => {
            let _ = rx.wait_for(|released| *released).await;
        }
        Some(ApiFault::Http502Html) => {
            return Some(Outcome::Answer(Response {
                status: 502,
                reason: "Bad Gateway",
                content_type: "text/html",
                location: None,
                body: HTML_502.as_bytes().to_vec(),
            }))
        }
        Some(ApiFault::NotJson) => {
            return Some(Outcome::Answer(Response::text(
                200,
                "OK",
                "system busy".into(),
            )))
        }
        Some(ApiFault::Reset) => return Some(Outcome::Reset),
        Some(ApiFault::Redirect) => {
            return Some(Outcome::Answer(Response {
                status: 302,
                reason: "Found",
                content_type: "text/html",
                location: Some("/elsewhere"),
                body: Vec::new(),
            }))
        }
    }
    let mut st = shared.lock();
    let st = &mut *st;
    Some(match path {
        "/cgi-bin/stable_token" => stable_token(st, body),
        "/cgi-bin/token" => plain_token(st, &params),
        _ => {
            let appid = match token_owner(&st.internal, params.get("access_token")) {
                Ok(appid) => appid,
                Err(code) => return Some(errcode(code)),
            };
            match path {
                "/wxa/msg_sec_check" => {
                    let echo: serde_json::Value =
                        serde_json::from_slice(body).unwrap_or(serde_json::Value::Null);
                    let seen: Vec<&str> = query
                        .split('&')
                        .filter(|p| !p.starts_with("access_token="))
                        .collect();
                    json(
                        serde_json::json!({
                            "errcode": 0, "errmsg": "ok",
                            "result": {"suggest": "pass", "label": 100},
                            "echo": echo, "query": seen.join("&"),
                        })
                        .to_string(),
                    )
                }
                "/wxa/getwxacodeunlimit" => Outcome::Answer(Response {
                    status: 200,
                    reason: "OK",
                    content_type: "image/png",
                    location: None,
                    body: png_for(body),
                }),
                "/wxa/checksession" => check_session(st, &appid, &params),
                _ => phone_number(&mut st.internal, body),
            }
        }
    })
}

fn stable_token(st: &mut super::State, body: &[u8]) -> Outcome {
    let Ok(request) = serde_json::from_slice::<serde_json::Value>(body) else {
        return errcode(47001);
    };
    let field = |name: &str| request[name].as_str().filter(|v| !v.is_empty());
    if field("grant_type") != Some("client_credential") {
        return errcode(40002);
    }
    let Some(appid) = field("appid") else {
        return errcode(41002);
    };
    let Some(expected) = st.apps.get(appid) else {
        return errcode(40013);
    };
    let Some(secret) = field("secret") else {
        return errcode(41004);
    };
    if secret != expected {
        return errcode(40125);
    }
    let force = request["force_refresh"].as_bool().unwrap_or(false);
    let life = st.internal.token_life.unwrap_or(7200);
    let t = st.internal.tokens.entry(appid.to_owned()).or_default();
    t.stable_calls += 1;
    let now = tokio::time::Instant::now();
    // Normal mode hands back the token in force until 5 minutes before it expires.
    let left = match (&t.current, t.issued) {
        (Some(_), Some((at, life))) => life.saturating_sub(now.duration_since(at).as_secs()),
        (Some(_), None) => life,
        (None, _) => 0,
    };
    if force || left < 300 {
        t.forced += usize::from(force);
        if let Some(old) = t.current.take() {
            // The old one keeps working for a while, as at WeChat.
            t.grace.insert(old);
        }
    }
    let (token, expires_in) = match &t.current {
        Some(token) => (token.clone(), left),
        None => {
            let token = new_token();
            t.current = Some(token.clone());
            t.issued = Some((now, life));
            (token, life)
        }
    };
    json(format!(
        r#"{{"access_token":{},"expires_in":{expires_in}}}"#,
        json_str(&token)
    ))
}

fn plain_token(st: &mut super::State, params: &HashMap<String, String>) -> Outcome {
    let appid = params.get("appid").cloned().unwrap_or_default();
    match st.apps.get(&appid) {
        None => return errcode(40013),
        Some(secret) if params.get("secret") != Some(secret) => return errcode(40125),
        Some(_) => {}
    }
    let token = new_token();
    st.internal
        .tokens
        .entry(appid)
        .or_default()
        .plain
        .insert(token.clone());
    json(format!(
        r#"{{"access_token":{},"expires_in":7200}}"#,
        json_str(&token)
    ))
}

/// The app a token was issued to, or the errcode WeChat answers to it.
fn token_owner(st: &State, token: Option<&String>) -> Result<String, i64> {
    let token = token.filter(|t| !t.is_empty()).ok_or(41001)?;
    let well_formed = token.len() >= 16
        && token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if !well_formed {
        return Err(40014);
    }
    for (appid, t) in &st.tokens {
        if t.current.as_ref() == Some(token) || t.grace.contains(token) || t.plain.contains(token) {
            return Ok(appid.clone());
        }
        if t.expired.contains(token) {
            return Err(42001);
        }
    }
    Err(40001)
}

fn check_session(st: &super::State, appid: &str, params: &HashMap<String, String>) -> Outcome {
    if params.get("sig_method").map(String::as_str) != Some("hmac_sha256") {
        return errcode(87009);
    }
    let openid = params.get("openid").cloned().unwrap_or_default();
    let current = st
        .users
        .get(&(appid.to_owned(), openid))
        .map(|u| checksession_signature(&u.session_key));
    match (current, params.get("signature")) {
        (Some(expected), Some(given)) if &expected == given => {
            json(r#"{"errcode":0,"errmsg":"ok"}"#.into())
        }
        _ => errcode(87009),
    }
}

fn phone_number(st: &mut State, body: &[u8]) -> Outcome {
    let code = serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v["code"].as_str().map(str::to_owned))
        .unwrap_or_default();
    let Some(phone) = st.phone_codes.get_mut(&code).filter(|p| !p.used) else {
        return errcode(40029);
    };
    // Consumed before the answer is written, like the login code.
    phone.used = true;
    let watermark = st
        .phone_watermark
        .clone()
        .unwrap_or_else(|| phone.appid.clone());
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    // countryCode as a number, as WeChat is seen to send it.
    let country: serde_json::Value = phone
        .country
        .parse::<u64>()
        .map_or_else(|_| phone.country.clone().into(), Into::into);
    json(
        serde_json::json!({
            "errcode": 0, "errmsg": "ok",
            "phone_info": {
                "phoneNumber": format!("+{}{}", phone.country, phone.pure),
                "purePhoneNumber": phone.pure,
                "countryCode": country,
                "watermark": {"timestamp": now, "appid": watermark},
            }
        })
        .to_string(),
    )
}

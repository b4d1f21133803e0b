//! What only the holder of a user's session_key can do: decrypt the
//! `encryptedData` the client got from WeChat (WeRun steps, share info,
//! the older phone flow), and ask WeChat whether the stored session_key is
//! still the user's current one. The key is the user's latest, from the
//! store; it never leaves wxgate.

use hyper::body::Incoming;
use serde::Deserialize;
use serde_json::Value;

use super::{body, json, Call};
use crate::error::Error;
use crate::http::body::Body;
use crate::secret::Secret;
use crate::wechat::api::api_error;
use crate::wechat::crypt::{self, CryptError};
use crate::wechat::WeChatError;

#[derive(Deserialize)]
struct Encrypted {
    #[serde(rename = "encryptedData")]
    encrypted_data: String,
    iv: String,
}

/// WeChat's answer to a signature made with another key than the current.
const SESSION_KEY_STALE: i64 = 87009;

/// A watermark from this far in the future is a clock problem, not data.
const CLOCK_SKEW_SECS: u64 = 300;

pub(super) async fn decrypt(
    call: &Call<'_>,
    openid: &str,
    request: Incoming,
) -> Result<http::Response<Body>, Error> {
    let Encrypted { encrypted_data, iv } = body::json(request).await?;
    let session_key = stored_key(call, openid).await?;
    let object =
        crypt::decrypt(session_key.expose(), &encrypted_data, &iv).map_err(|e| match e {
            CryptError::BadInput(why) => Error::InvalidRequest(why),
            CryptError::Failed => Error::DecryptFailed,
        })?;
    check_watermark(
        &object,
        &call.app.appid,
        call.config.decrypt_max_age.as_secs(),
        crate::auth::token::now(),
    )?;
    Ok(json(&Value::Object(object)))
}

/// The user's latest session_key, from the store.
async fn stored_key(call: &Call<'_>, openid: &str) -> Result<Secret, Error> {
    let session = call.gw.store().session(&call.app.appid, openid).await?;
    Ok(session.ok_or(Error::SessionUnknown)?.session_key)
}

/// `watermark.appid` must be this app and `watermark.timestamp` (Unix
/// seconds) no older than `max_age`.
fn check_watermark(
    object: &serde_json::Map<String, Value>,
    appid: &str,
    max_age: u64,
    now: u64,
) -> Result<(), Error> {
    let watermark = object.get("watermark").ok_or(Error::WatermarkMismatch)?;
    if watermark["appid"].as_str() != Some(appid) {
        return Err(Error::WatermarkMismatch);
    }
    let timestamp = match &watermark["timestamp"] {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.parse().ok(),
        _ => None,
    }
    .ok_or(Error::WatermarkMismatch)?;
    if timestamp.saturating_add(max_age) < now || timestamp > now + CLOCK_SKEW_SECS {
        return Err(Error::WatermarkMismatch);
    }
    Ok(())
}

pub(super) async fn session(call: &Call<'_>, openid: &str) -> Result<http::Response<Body>, Error> {
    let signature = crypt::checksession_signature(stored_key(call, openid).await?.expose());
    let wechat = &call.snap.wechat_api;
    let answer = call
        .wechat_json(|token| {
            let signature = &signature;
            async move { wechat.check_session(&token, openid, signature).await }
        })
        .await?;
    let valid = match answer {
        Ok(_) => true,
        Err(WeChatError::Errcode(SESSION_KEY_STALE)) => false,
        Err(e) => return Err(api_error(&e)),
    };
    Ok(json(&serde_json::json!({
        "openid": openid,
        "appid": call.app.appid,
        "session_key_valid": valid,
    })))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn watermarks() {
        let object = |wm: Value| {
            let Value::Object(o) = serde_json::json!({"x": 1, "watermark": wm}) else {
                unreachable!()
            };
            o
        };
        let now = 1_800_000_000;
        let ok = |wm| check_watermark(&object(wm), "wx1", 600, now).is_ok();
        assert!(ok(serde_json::json!({"appid": "wx1", "timestamp": now})));
        assert!(ok(
            serde_json::json!({"appid": "wx1", "timestamp": now - 600})
        ));
        assert!(ok(
            serde_json::json!({"appid": "wx1", "timestamp": (now - 10).to_string()})
        ));
        assert!(!ok(
            serde_json::json!({"appid": "wx1", "timestamp": now - 601})
        ));
        assert!(!ok(
            serde_json::json!({"appid": "wx1", "timestamp": now + 301})
        ));
        assert!(!ok(serde_json::json!({"appid": "wx2", "timestamp": now})));
        assert!(!ok(serde_json::json!({"timestamp": now})));
        assert!(!ok(serde_json::json!({"appid": "wx1"})));
        let Value::Object(bare) = serde_json::json!({"x": 1}) else {
            unreachable!()
        };
        assert!(check_watermark(&bare, "wx1", 600, now).is_err());
    }
}

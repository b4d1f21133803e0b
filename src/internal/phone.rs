//! `POST phone_number`: a getPhoneNumber code exchanged for the number with
//! `wxa/business/getuserphonenumber`. From the backend, never the client:
//! the client could claim any number; the backend gets it from WeChat.

use hyper::body::Incoming;
use serde::Deserialize;
use serde_json::Value;

use super::{body, json, Call};
use crate::error::Error;
use crate::http::body::Body;
use crate::wechat::api::api_error;
use crate::wechat::WeChatError;

#[derive(Deserialize)]
struct PhoneCode {
    code: String,
}

pub(super) async fn phone_number(
    call: &Call<'_>,
    request: Incoming,
) -> Result<http::Response<Body>, Error> {
    let PhoneCode { code } = body::json(request).await?;
    if code.is_empty() || code.len() > 512 {
        return Err(Error::InvalidRequest("code must be a getPhoneNumber code"));
    }
    let wechat = &call.snap.wechat_api;
    let answer = call
        .wechat_json(|token| {
            let code = &code;
            async move { wechat.phone_number(&token, code).await }
        })
        .await?;
    let answer = match answer {
        Ok(answer) => answer,
        Err(WeChatError::Errcode(40029)) => return Err(Error::PhoneCodeInvalid),
        Err(e) => return Err(api_error(&e)),
    };
    let info = &answer["phone_info"];
    if info["watermark"]["appid"].as_str() != Some(call.app.appid.as_str()) {
        return Err(Error::WatermarkMismatch);
    }
    let text = |v: &Value| match v {
        Value::String(s) => Some(s.clone()),
        // countryCode is documented as a string and seen as a number.
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    };
    let (Some(phone), Some(pure), Some(country)) = (
        text(&info["phoneNumber"]),
        text(&info["purePhoneNumber"]),
        text(&info["countryCode"]),
    ) else {
        return Err(Error::WeChatUnavailable);
    };
    Ok(json(&serde_json::json!({
        "phoneNumber": phone,
        "purePhoneNumber": pure,
        "countryCode": country,
    })))
}

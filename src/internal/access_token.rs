//! `GET access_token` and `POST access_token/invalidate`: the app's token
//! in force, and the passive-refresh interface for a backend that WeChat
//! told the token was refused.

use hyper::body::Incoming;
use serde::Deserialize;

use super::{body, json, Call};
use crate::error::Error;
use crate::http::body::Body;
use crate::wechat::access_token::Current;

pub(super) async fn get(call: &Call<'_>) -> Result<http::Response<Body>, Error> {
    let current = call
        .gw
        .tokens()
        .get(&call.snap.wechat_api, call.app)
        .await?;
    Ok(answer(&current))
}

#[derive(Deserialize)]
struct Refused {
    access_token: String,
}

pub(super) async fn invalidate(
    call: &Call<'_>,
    request: Incoming,
) -> Result<http::Response<Body>, Error> {
    let refused: Refused = body::json(request).await?;
    if refused.access_token.is_empty() || refused.access_token.len() > 2048 {
        return Err(Error::InvalidRequest(
            "access_token must be the token WeChat refused",
        ));
    }
    let current = call
        .gw
        .tokens()
        .invalidate(&call.snap.wechat_api, call.app, &refused.access_token)
        .await?;
    Ok(answer(&current))
}

/// The one place an access_token leaves wxgate.
fn answer(current: &Current) -> http::Response<Body> {
    json(&serde_json::json!({
        "access_token": current.token.expose(),
        "expires_in": current.expires_in,
    }))
}

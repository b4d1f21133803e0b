//! Request bodies of the internal API: read whole, within a limit and a
//! time, and parsed as the endpoint's JSON.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use serde::de::DeserializeOwned;

use crate::error::Error;

/// The JSON bodies of wxgate's own endpoints (encryptedData of a month of
/// WeRun steps is a few KiB).
pub(super) const JSON_LIMIT: usize = 1024 * 1024;

/// A caller that cannot send its body in this time is not a backend.
const BODY_TIMEOUT: Duration = Duration::from_secs(30);

/// The whole body, or 413 beyond `limit` bytes.
pub(super) async fn read(body: Incoming, limit: usize) -> Result<Bytes, Error> {
    if http_body::Body::size_hint(&body)
        .exact()
        .is_some_and(|n| n > limit as u64)
    {
        return Err(Error::PayloadTooLarge);
    }
    let collected = tokio::time::timeout(BODY_TIMEOUT, Limited::new(body, limit).collect())
        .await
        .map_err(|_| Error::InvalidRequest("the request body did not arrive in time"))?;
    match collected {
        Ok(body) => Ok(body.to_bytes()),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => Err(Error::PayloadTooLarge),
        Err(_) => Err(Error::InvalidRequest("the request body could not be read")),
    }
}

/// The body as `T`, else 400.
pub(super) async fn json<T: DeserializeOwned>(body: Incoming) -> Result<T, Error> {
    let bytes = read(body, JSON_LIMIT).await?;
    serde_json::from_slice(&bytes)
        .map_err(|_| Error::InvalidRequest("the body is not the JSON this endpoint expects"))
}

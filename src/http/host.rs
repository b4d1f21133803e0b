//! The host a request is for.

use crate::config::strip_port;
use crate::error::Error;

/// The host a request is for, without port: the absolute-form authority or
/// HTTP/2 `:authority` if present, else `Host`. Two `Host` headers are 400
/// (RFC 9112 §3.2): host routes and the upstream could each pick another.
pub fn request_host(parts: &http::request::Parts) -> Result<Option<&str>, Error> {
    let mut hosts = parts.headers.get_all(http::header::HOST).iter();
    let host_header = hosts.next();
    if hosts.next().is_some() {
        return Err(Error::InvalidRequest("more than one Host header"));
    }
    Ok(parts
        .uri
        .host()
        .or_else(|| host_header?.to_str().ok())
        .map(strip_port))
}

//! The host a request is for, normalized once: without port, without the
//! trailing dot of a fully qualified name, compared without case, and
//! refused (400) when it is no host name at all. Routing, the absolute-form
//! check, forward-auth and `X-Forwarded-Host` all see this one spelling, so
//! `admin.example.` or `ADMIN.example.:80` cannot miss a host route that
//! `admin.example` would hit.

use std::net::Ipv6Addr;

use http::uri::Authority;
use http::HeaderValue;

use crate::error::Error;

/// A host as a request names it, checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Host<'a> {
    /// Without port and trailing dot, in the request's case (routes compare
    /// without case); an IPv6 literal keeps its brackets.
    pub name: &'a str,
    /// The port, if the request gave one.
    pub port: Option<u16>,
    /// Already in its normal spelling: lowercase, no trailing dot, no empty
    /// or zero-padded port. Most requests are, and cost no allocation.
    normal: bool,
}

const INVALID: Error = Error::InvalidRequest("the Host is not a valid host name");

impl<'a> Host<'a> {
    /// Parses `host[:port]`. Empty text is no host (RFC 9112 §3.2: an empty
    /// `Host` is allowed when the target has no authority).
    pub fn parse(text: &'a str) -> Result<Option<Host<'a>>, Error> {
        if text.is_empty() {
            return Ok(None);
        }
        let (name, port) = match text.strip_prefix('[') {
            Some(rest) => {
                let end = rest.find(']').ok_or(INVALID)?;
                rest[..end].parse::<Ipv6Addr>().map_err(|_| INVALID)?;
                let (name, after) = text.split_at(end + 2);
                match after {
                    "" => (name, None),
                    _ => (name, Some(after.strip_prefix(':').ok_or(INVALID)?)),
                }
            }
            None => match text.bytes().rposition(|b| b == b':') {
                Some(colon) => (&text[..colon], Some(&text[colon + 1..])),
                None => (text, None),
            },
        };
        let port_number = match port {
            None | Some("") => None,
            Some(p) if p.bytes().all(|b| b.is_ascii_digit()) => {
                Some(p.parse::<u16>().map_err(|_| INVALID)?)
            }
            Some(_) => return Err(INVALID),
        };
        let (dotless, lowercase) = match name.starts_with('[') {
            true => (name, true),
            false => dns_name(name).ok_or(INVALID)?,
        };
        let normal = dotless.len() == name.len()
            && lowercase
            && port.is_none_or(|p| !p.is_empty() && (p == "0" || !p.starts_with('0')));
        Ok(Some(Host {
            name: dotless,
            port: port_number,
            normal,
        }))
    }

    /// The normal spelling, `name[:port]` lowercase, when the request used
    /// another; `None` when it already is normal.
    pub fn respelled(&self) -> Option<HeaderValue> {
        if self.normal {
            return None;
        }
        let mut text = self.name.to_ascii_lowercase();
        if let Some(port) = self.port {
            text.push(':');
            text.push_str(&port.to_string());
        }
        HeaderValue::try_from(text).ok()
    }
}

/// Letters, digits, `-` and `_` in non-empty labels of at most 63 bytes,
/// 253 bytes in all (RFC 1035 §2.3.4; `_` is common in internal names),
/// with one trailing dot allowed. IPv4 literals pass as four labels of
/// digits. Gives the name without its trailing dot, and whether it has no
/// uppercase letter. One pass over the bytes: every request's host goes
/// through here.
fn dns_name(name: &str) -> Option<(&str, bool)> {
    let dotless = name.strip_suffix('.').unwrap_or(name);
    if dotless.is_empty() || dotless.len() > 253 {
        return None;
    }
    let (mut label, mut lowercase) = (0usize, true);
    for b in dotless.bytes() {
        match b {
            b'.' if label == 0 => return None,
            b'.' => label = 0,
            b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' => label += 1,
            b'A'..=b'Z' => {
                lowercase = false;
                label += 1;
            }
            _ => return None,
        }
        if label > 63 {
            return None;
        }
    }
    (label > 0).then_some((dotless, lowercase))
}

/// The host a request is for: the absolute-form authority or HTTP/2
/// `:authority` if present, else `Host`. Two `Host` headers are 400
/// (RFC 9112 §3.2): host routes and the upstream could each pick another;
/// so is an authority with user info (`user@host`), which a URI allows and
/// no request to wxgate needs.
pub fn request_host(parts: &http::request::Parts) -> Result<Option<Host<'_>>, Error> {
    let mut hosts = parts.headers.get_all(http::header::HOST).iter();
    let host_header = hosts.next();
    if hosts.next().is_some() {
        return Err(Error::InvalidRequest("more than one Host header"));
    }
    let text = match (parts.uri.authority(), host_header) {
        (Some(authority), _) => authority.as_str(),
        (None, Some(header)) => header.to_str().map_err(|_| INVALID)?,
        (None, None) => return Ok(None),
    };
    Host::parse(text)
}

/// Writes the normal spelling of the request's host where the rest of the
/// request's life reads it (the `Host` header, and the URI's authority when
/// there is one), so the upstream's `X-Forwarded-Host` names the host that
/// was routed on, spelled as the route writes it.
pub fn respell(parts: &mut http::request::Parts, host: HeaderValue) {
    let authority = host.to_str().ok().and_then(|h| h.parse::<Authority>().ok());
    if let (Some(_), Some(authority)) = (parts.uri.authority(), authority) {
        let mut uri = parts.uri.clone().into_parts();
        uri.authority = Some(authority);
        // (It cannot fail: the same URI with an authority that parsed.)
        if let Ok(uri) = http::Uri::from_parts(uri) {
            parts.uri = uri;
        }
    }
    if parts.headers.contains_key(http::header::HOST) {
        parts.headers.insert(http::header::HOST, host);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(text: &str) -> Option<(String, Option<u16>, Option<String>)> {
        let host = Host::parse(text).ok()??;
        let respelled = host.respelled().map(|v| v.to_str().unwrap().to_owned());
        Some((host.name.to_owned(), host.port, respelled))
    }

    #[test]
    fn spellings_of_one_host() {
        let same = |text: &str, respelled: Option<&str>| {
            let (name, _, r) = parsed(text).unwrap_or_else(|| panic!("{text} refused"));
            assert!(name.eq_ignore_ascii_case("admin.example"), "{text}: {name}");
            assert_eq!(r.as_deref(), respelled, "{text}");
        };
        same("admin.example", None);
        same("admin.example:8080", None);
        same("admin.example.", Some("admin.example"));
        same("admin.example.:80", Some("admin.example:80"));
        same("ADMIN.Example", Some("admin.example"));
        same("admin.example:", Some("admin.example"));
        same("admin.example:080", Some("admin.example:80"));
        assert_eq!(
            parsed("127.0.0.1:9"),
            Some(("127.0.0.1".into(), Some(9), None))
        );
        assert_eq!(parsed("[::1]:9"), Some(("[::1]".into(), Some(9), None)));
        assert_eq!(parsed("[::1]"), Some(("[::1]".into(), None, None)));
        assert_eq!(
            parsed("svc_internal.local"),
            Some(("svc_internal.local".into(), None, None))
        );
        assert!(matches!(Host::parse(""), Ok(None)));
    }

    #[test]
    fn what_is_no_host_name() {
        for bad in [
            "admin example",
            "user@admin.example",
            "admin..example",
            ".admin.example",
            "admin.example..",
            ".",
            ":80",
            "admin.example:http",
            "admin.example:65536",
            "a:b:80",
            "[::1",
            "[nope]:80",
            "[::1]x",
            "admin.example/x",
            "admin%2eexample",
            &"a".repeat(64),
        ] {
            assert!(
                matches!(Host::parse(bad), Err(Error::InvalidRequest(_))),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn respelling_rewrites_host_and_authority() {
        let mut parts = http::Request::builder()
            .uri("http://Admin.Example.:80/x?q")
            .header("host", "Admin.Example.:80")
            .body(())
            .unwrap()
            .into_parts()
            .0;
        let host = request_host(&parts).unwrap().unwrap().respelled().unwrap();
        respell(&mut parts, host);
        assert_eq!(parts.uri, "http://admin.example:80/x?q");
        assert_eq!(parts.headers["host"], "admin.example:80");
    }
}

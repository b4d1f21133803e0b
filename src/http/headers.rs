//! Header rules at the trust boundary: which client headers never reach the
//! upstream (identity look-alikes, hop-by-hop, whatever `Connection` names),
//! how the verified identity goes in, and who the client is.
//!
//! Order matters and is fixed here: strip first, inject last, so nothing a
//! client sends can remove or duplicate what wxgate injects.

use std::net::{IpAddr, SocketAddr};

use http::header::{self, Entry, HeaderMap, HeaderName, HeaderValue};
use ipnet::IpNet;

use crate::config::IdentityConfig;

/// RFC 9110 §7.6.1: fields meaningful only for one connection. `Upgrade`
/// survives only on a WebSocket handshake, which re-adds it.
const HOP_BY_HOP: [HeaderName; 6] = [
    header::CONNECTION,
    HeaderName::from_static("proxy-connection"),
    HeaderName::from_static("keep-alive"),
    header::TE,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
];

pub const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
pub const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
pub const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
pub const X_REAL_IP: HeaderName = HeaderName::from_static("x-real-ip");

/// Headers some frameworks (Symfony, Laravel, IIS rewrite, forward-auth
/// setups) read as "the real request path". wxgate routed and authorized
/// the request on its own path; an upstream must not route it on another
/// one, so a client never gets to name one. CGI-style servers read `_` as
/// `-`, so the lookalikes go too.
const PATH_OVERRIDES: [&[u8]; 6] = [
    b"x-original-url",
    b"x-original-uri",
    b"x-rewrite-url",
    b"x-forwarded-uri",
    b"x-forwarded-path",
    b"x-forwarded-prefix",
];

fn is_path_override(name: &str) -> bool {
    let name = name.as_bytes();
    name.len() >= 13 && PATH_OVERRIDES.iter().any(|p| same_name(name, p))
}

pub fn is_hop_by_hop(name: &HeaderName) -> bool {
    HOP_BY_HOP.contains(name)
}

/// Which hop-by-hop fields a request has, from one pass over its names
/// (cheaper than a lookup per field).
#[derive(Clone, Copy, Default)]
pub struct HopByHop {
    pub te: bool,
    pub upgrade: bool,
}

impl HopByHop {
    pub fn of(headers: &HeaderMap) -> HopByHop {
        let mut seen = HopByHop::default();
        for name in headers.keys() {
            seen.te |= name == header::TE;
            seen.upgrade |= name == header::UPGRADE;
        }
        seen
    }
}

/// `a` equals `b` ignoring ASCII case and reading `_` as `-`.
fn same_name(a: &[u8], b: &[u8]) -> bool {
    let fold = |c: u8| {
        if c == b'_' {
            b'-'
        } else {
            c.to_ascii_lowercase()
        }
    };
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| fold(*x) == fold(*y))
}

/// Would a client header of this name pass for an identity header?
pub fn is_identity_name(name: &str, identity: &IdentityConfig) -> bool {
    let name = name.as_bytes();
    (name.len() >= 5 && same_name(&name[..5], b"x-wx-"))
        || [
            &identity.openid_header,
            &identity.unionid_header,
            &identity.appid_header,
        ]
        .iter()
        .any(|h| same_name(name, h.as_str().as_bytes()))
}

/// What a client may not send on: identity look-alikes, path overrides,
/// hop-by-hop headers and whatever `Connection` names, any name spelled
/// with `_`, and the names a route and peer add (the token header unless
/// forwarded, `Expect`, and from untrusted peers `X-Real-IP` and
/// `Forwarded`). One rule for a request's head and its trailers.
#[derive(Debug)]
pub struct StripRule {
    identity: IdentityConfig,
    also: Vec<HeaderName>,
}

impl StripRule {
    pub fn new(identity: IdentityConfig, also: Vec<HeaderName>) -> StripRule {
        StripRule { identity, also }
    }

    /// Strips `headers` (a request's head or its trailers), in one pass over
    /// the names: a name that is not there costs a comparison, not a lookup.
    pub fn apply(&self, headers: &mut HeaderMap) {
        // Empty (no allocation) for an ordinary request.
        let mut doomed = Vec::new();
        let mut connection = false;
        for name in headers.keys() {
            if is_hop_by_hop(name) {
                connection |= name == header::CONNECTION;
                doomed.push(name.clone());
            } else if self.also.contains(name)
                || is_identity_name(name.as_str(), &self.identity)
                || is_path_override(name.as_str())
                || self.is_controlled_lookalike(name.as_str())
            {
                doomed.push(name.clone());
            }
        }
        if connection {
            remove_connection_named(headers, &PROTECTED);
        }
        for name in &doomed {
            headers.remove(name);
        }
    }
}

impl StripRule {
    /// A name spelled with `_` that a CGI or WSGI upstream, which reads `_`
    /// as `-`, would take for a header wxgate sets or controls
    /// (`X_Real_IP`, `Transfer_Encoding`, …): two framings of one body are
    /// request smuggling, two client addresses a spoof. Other names with
    /// `_` pass, as they are.
    fn is_controlled_lookalike(&self, name: &str) -> bool {
        let name = name.as_bytes();
        name.contains(&b'_')
            && CONTROLLED
                .iter()
                .chain(&HOP_BY_HOP)
                .chain(&self.also)
                .any(|c| same_name(name, c.as_str().as_bytes()))
    }
}

/// Request fields wxgate sets, or frames the request by.
const CONTROLLED: [HeaderName; 9] = [
    header::HOST,
    header::CONTENT_LENGTH,
    header::FORWARDED,
    header::EXPECT,
    X_FORWARDED_FOR,
    X_FORWARDED_PROTO,
    X_FORWARDED_HOST,
    X_REAL_IP,
    HeaderName::from_static("x-request-id"),
];

/// Fields of a request that a client's `Connection` line cannot remove:
/// what wxgate sets before the strip (`Host`, `X-Request-Id`) and the
/// body's framing.
const PROTECTED: [HeaderName; 3] = [
    header::HOST,
    header::CONTENT_LENGTH,
    HeaderName::from_static("x-request-id"),
];

/// The one rule for every upstream answer, whichever way it came: the
/// fields of the upstream's connection go (RFC 9110 §7.6.1: hop-by-hop ones
/// and whatever `Connection` names), and so does a `Content-Length` beside a
/// `Transfer-Encoding` (RFC 9112 §6.3: the coding frames the body, the
/// length is wrong), so the client's answer is framed by its body alone.
///
/// Fed field by field: the pool's codec [`note`](Self::note)s each field as
/// it parses the answer and keeps only what passes, so the common answer
/// costs no removal; [`strip_response_headers`] runs the same rule over a
/// map hyper's client built. Either way, [`finish`](Self::finish) last.
#[derive(Default)]
pub struct AnswerRule {
    /// A `Transfer-Encoding` was sent.
    coded: bool,
    /// `Connection` lines that name end-to-end fields (almost never any).
    naming: Vec<HeaderValue>,
}

impl AnswerRule {
    /// Takes note of one field of the answer; `false` if it belongs to the
    /// connection and must not go on.
    pub fn note(&mut self, name: &HeaderName, value: &HeaderValue) -> bool {
        if !is_hop_by_hop(name) {
            return true;
        }
        if name == header::TRANSFER_ENCODING {
            self.coded = true;
        } else if name == header::CONNECTION
            && value
                .to_str()
                .is_ok_and(|line| named_fields(line).next().is_some())
        {
            self.naming.push(value.clone());
        }
        false
    }

    /// Removes what the noted fields call for from the answer's `headers`.
    pub fn finish(self, headers: &mut HeaderMap) {
        if self.coded {
            headers.remove(header::CONTENT_LENGTH);
        }
        for line in &self.naming {
            let Ok(line) = line.to_str() else { continue };
            for field in named_fields(line) {
                headers.remove(field);
            }
        }
    }
}

/// [`AnswerRule`] over an answer whose headers are already in a map.
pub fn strip_response_headers(headers: &mut HeaderMap) {
    let mut rule = AnswerRule::default();
    // Empty (no allocation) when the answer has no connection field.
    let mut doomed = Vec::new();
    for (name, value) in headers.iter() {
        if !rule.note(name, value) {
            doomed.push(name.clone());
        }
    }
    for name in &doomed {
        headers.remove(name);
    }
    rule.finish(headers);
}

/// The fields a `Connection` line names, but for hop-by-hop ones (which
/// every pass over the names removes anyway).
pub(crate) fn named_fields(line: &str) -> impl Iterator<Item = &str> {
    line.split(',').map(str::trim).filter(|token| {
        !token.is_empty()
            && !HOP_BY_HOP
                .iter()
                .any(|h| h.as_str().eq_ignore_ascii_case(token))
    })
}

/// Removes `Connection` and every header it names (RFC 9110 §7.6.1) but
/// `keep`. Names are looked up as they are written, never allocated;
/// hop-by-hop ones (`keep-alive`, the usual one) are left to the caller's
/// pass over the names.
fn remove_connection_named(headers: &mut HeaderMap, keep: &[HeaderName]) {
    let mut lines = headers.get_all(header::CONNECTION).iter();
    let Some(first) = lines.next().cloned() else {
        return;
    };
    let rest: Vec<HeaderValue> = lines.cloned().collect();
    headers.remove(header::CONNECTION);
    for line in std::iter::once(&first).chain(&rest) {
        let Ok(line) = line.to_str() else { continue };
        for field in named_fields(line) {
            if !keep.iter().any(|k| k.as_str().eq_ignore_ascii_case(field)) {
                headers.remove(field);
            }
        }
    }
}

/// Appends the peer's address to `X-Forwarded-For` as one field line, and
/// sets `X-Forwarded-Proto` and `X-Forwarded-Host`.
pub fn set_forwarded(
    headers: &mut HeaderMap,
    peer_ip: &HeaderValue,
    proto: &'static str,
    host: Option<HeaderValue>,
) {
    match headers.entry(X_FORWARDED_FOR) {
        Entry::Occupied(mut entry) => {
            let mut xff = Vec::new();
            for value in entry.iter() {
                xff.extend_from_slice(value.as_bytes());
                xff.extend_from_slice(b", ");
            }
            xff.extend_from_slice(peer_ip.as_bytes());
            if let Ok(value) = HeaderValue::from_bytes(&xff) {
                entry.insert(value);
            }
        }
        Entry::Vacant(entry) => {
            entry.insert(peer_ip.clone());
        }
    }
    headers.insert(X_FORWARDED_PROTO, HeaderValue::from_static(proto));
    match host {
        Some(host) => headers.insert(X_FORWARDED_HOST, host),
        None => headers.remove(X_FORWARDED_HOST),
    };
}

/// The client's address: the peer, unless the peer is a trusted proxy; then
/// the rightmost `X-Forwarded-For` entry that is not itself trusted.
pub fn client_ip(peer: SocketAddr, headers: &HeaderMap, trusted: &[IpNet]) -> IpAddr {
    let mut client = canonical(peer.ip());
    if !is_trusted(client, trusted) {
        return client;
    }
    let values: Vec<&HeaderValue> = headers.get_all(&X_FORWARDED_FOR).iter().collect();
    for value in values.iter().rev() {
        let Ok(text) = value.to_str() else {
            return client;
        };
        for entry in text.rsplit(',') {
            let Some(ip) = parse_forwarded_ip(entry.trim()) else {
                return client;
            };
            client = ip;
            if !is_trusted(ip, trusted) {
                return ip;
            }
        }
    }
    client
}

/// Is `ip` (IPv4-mapped counted as IPv4) in `server.trusted_proxies`?
pub fn is_trusted(ip: IpAddr, trusted: &[IpNet]) -> bool {
    let ip = canonical(ip);
    trusted.iter().any(|net| net.contains(&ip))
}

fn parse_forwarded_ip(entry: &str) -> Option<IpAddr> {
    entry
        .parse::<IpAddr>()
        .or_else(|_| entry.parse::<SocketAddr>().map(|s| s.ip()))
        .ok()
        .map(canonical)
}

/// IPv4-mapped IPv6 addresses count as the IPv4 address.
pub fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::inject_identity;
    use crate::auth::token::Verified;

    fn identity() -> IdentityConfig {
        IdentityConfig {
            openid_header: HeaderName::from_static("x-wx-openid"),
            unionid_header: HeaderName::from_static("x-wx-unionid"),
            appid_header: HeaderName::from_static("x-user-app"),
        }
    }

    fn map(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_static(v));
        }
        h
    }

    fn names(h: &HeaderMap) -> Vec<&str> {
        let mut n: Vec<&str> = h.keys().map(HeaderName::as_str).collect();
        n.sort_unstable();
        n
    }

    #[test]
    fn whatever_connection_names_goes_in_either_direction() {
        let sent = [
            ("connection", "keep-alive, X-Secret-Hop"),
            ("connection", " x-other ,, bad name!, close"),
            ("x-secret-hop", "1"),
            ("x-other", "2"),
            ("keep-alive", "timeout=5"),
            ("x-kept", "3"),
            ("content-type", "text/plain"),
        ];
        let mut request = map(&sent);
        StripRule::new(identity(), vec![]).apply(&mut request);
        assert_eq!(names(&request), ["content-type", "x-kept"]);
        let mut response = map(&sent);
        strip_response_headers(&mut response);
        assert_eq!(names(&response), ["content-type", "x-kept"]);
        // Nothing hop-by-hop: nothing touched.
        let mut plain = map(&[("x-kept", "3"), ("content-type", "text/plain")]);
        strip_response_headers(&mut plain);
        assert_eq!(names(&plain), ["content-type", "x-kept"]);
        // `Connection` alone, naming hop-by-hop fields only (the common
        // answer), or naming another field on a second line.
        for (lines, kept) in [
            (&[("connection", "Keep-Alive")][..], &["x-kept"][..]),
            (&[("connection", " close ,")][..], &["x-kept"][..]),
            (
                &[("connection", "keep-alive"), ("connection", "x-kept")][..],
                &[][..],
            ),
        ] {
            let mut response = map(lines);
            response.append("x-kept", HeaderValue::from_static("3"));
            strip_response_headers(&mut response);
            assert_eq!(names(&response), kept, "{lines:?}");
        }
        // A request without `Connection` loses only what it must.
        let mut request = map(&[("keep-alive", "5"), ("te", "trailers"), ("x-kept", "3")]);
        StripRule::new(identity(), vec![]).apply(&mut request);
        assert_eq!(names(&request), ["x-kept"]);
    }

    #[test]
    fn no_underscore_spelling_of_any_header_gets_through() {
        // What a CGI or WSGI upstream reads as X-Real-IP, X-Forwarded-*,
        // X-Request-Id and the framing fields.
        let sent = [
            ("x_real_ip", "6.6.6.6"),
            ("X_Forwarded_For", "6.6.6.6"),
            ("x_forwarded_host", "evil"),
            ("x_forwarded_proto", "https"),
            ("x_request_id", "forged"),
            ("transfer_encoding", "chunked"),
            ("content_length", "5"),
            ("x-kept", "3"),
        ];
        let mut request = map(&sent);
        request.append("x_custom", HeaderValue::from_static("kept"));
        StripRule::new(identity(), vec![]).apply(&mut request);
        assert_eq!(names(&request), ["x-kept", "x_custom"]);
        // The route's own names too (a custom token header, say).
        let mut request = map(&[("x_token", "t"), ("x-kept", "1")]);
        let rule = StripRule::new(identity(), vec![HeaderName::from_static("x-token")]);
        rule.apply(&mut request);
        assert_eq!(names(&request), ["x-kept"]);
    }

    #[test]
    fn a_clients_connection_line_cannot_remove_what_wxgate_sets() {
        let mut request = map(&[
            ("connection", "host, X-Request-Id, content-length, x-gone"),
            ("host", "upstream"),
            ("x-request-id", "abc"),
            ("content-length", "5"),
            ("x-gone", "1"),
        ]);
        StripRule::new(identity(), vec![]).apply(&mut request);
        assert_eq!(names(&request), ["content-length", "host", "x-request-id"]);
    }

    #[test]
    fn a_length_beside_a_transfer_coding_is_dropped_from_answers() {
        let mut response = map(&[
            ("transfer-encoding", "chunked"),
            ("content-length", "3"),
            ("x-kept", "1"),
        ]);
        strip_response_headers(&mut response);
        assert_eq!(names(&response), ["x-kept"]);
        // Alone, a length stays: it frames the body.
        let mut response = map(&[("content-length", "3"), ("connection", "keep-alive")]);
        strip_response_headers(&mut response);
        assert_eq!(names(&response), ["content-length"]);
    }

    #[test]
    fn the_routes_and_peers_names_go_too() {
        let also = vec![X_REAL_IP, header::FORWARDED, header::AUTHORIZATION];
        let mut trailers = map(&[
            ("x-real-ip", "6.6.6.6"),
            ("forwarded", "for=6.6.6.6"),
            ("authorization", "Bearer t"),
            ("x-kept", "1"),
        ]);
        StripRule::new(identity(), also).apply(&mut trailers);
        assert_eq!(names(&trailers), ["x-kept"]);
    }

    #[test]
    fn identity_names_match_case_and_underscore() {
        let id = identity();
        for name in [
            "x-wx-openid",
            "X_WX_OPENID",
            "x-wx-anything",
            "x_wx_",
            "X-User-App",
            "x_user_app",
        ] {
            assert!(is_identity_name(name, &id), "{name}");
        }
        for name in [
            "x-wxopenid",
            "x-w",
            "x-user-apps",
            "authorization",
            "x-wy-openid",
        ] {
            assert!(!is_identity_name(name, &id), "{name}");
        }
    }

    #[test]
    fn strip_then_inject_leaves_exactly_one() {
        let id = identity();
        let mut h = HeaderMap::new();
        h.append("x-wx-openid", HeaderValue::from_static("spoof1"));
        h.append("x-wx-openid", HeaderValue::from_static("spoof2"));
        h.append("x_wx_openid", HeaderValue::from_static("spoof3"));
        h.append(
            "connection",
            HeaderValue::from_static("keep-alive, x-secret-hop"),
        );
        h.append("x-secret-hop", HeaderValue::from_static("1"));
        h.append("keep-alive", HeaderValue::from_static("timeout=5"));
        h.append("accept", HeaderValue::from_static("*/*"));
        StripRule::new(id.clone(), vec![]).apply(&mut h);
        assert_eq!(h.len(), 1, "{h:?}");
        let who = Verified {
            openid: HeaderValue::from_static("o1"),
            appid: HeaderValue::from_static("wx1"),
            unionid: None,
            jti: "j".into(),
            exp: 0,
        };
        inject_identity(&mut h, &who, &id);
        assert_eq!(h.get_all("x-wx-openid").iter().count(), 1);
        assert_eq!(h["x-wx-openid"], "o1");
        assert_eq!(h["x-user-app"], "wx1");
        assert!(h.get("x-wx-unionid").is_none());
    }

    #[test]
    fn client_ip_trusts_only_configured_proxies() {
        let trusted: Vec<IpNet> = vec!["10.0.0.0/8".parse().unwrap()];
        let mut h = HeaderMap::new();
        h.append(
            X_FORWARDED_FOR,
            HeaderValue::from_static("6.6.6.6, 1.2.3.4, 10.0.0.9"),
        );
        let untrusted_peer: SocketAddr = "5.5.5.5:1".parse().unwrap();
        assert_eq!(
            client_ip(untrusted_peer, &h, &trusted).to_string(),
            "5.5.5.5"
        );
        let proxy: SocketAddr = "10.1.1.1:1".parse().unwrap();
        assert_eq!(client_ip(proxy, &h, &trusted).to_string(), "1.2.3.4");
        h.append(X_FORWARDED_FOR, HeaderValue::from_static("7.7.7.7"));
        assert_eq!(client_ip(proxy, &h, &trusted).to_string(), "7.7.7.7");
        let mut bad = HeaderMap::new();
        bad.append(X_FORWARDED_FOR, HeaderValue::from_static("garbage"));
        assert_eq!(client_ip(proxy, &bad, &trusted).to_string(), "10.1.1.1");
    }

    #[test]
    fn forwarded_for_is_appended_as_one_line() {
        let mut h = HeaderMap::new();
        h.append(X_FORWARDED_FOR, HeaderValue::from_static("1.1.1.1"));
        h.append(X_FORWARDED_FOR, HeaderValue::from_static("2.2.2.2"));
        set_forwarded(
            &mut h,
            &HeaderValue::from_static("3.3.3.3"),
            "http",
            Some(HeaderValue::from_static("a.example")),
        );
        assert_eq!(h.get_all(X_FORWARDED_FOR).iter().count(), 1);
        assert_eq!(h[X_FORWARDED_FOR], "1.1.1.1, 2.2.2.2, 3.3.3.3");
        assert_eq!(h[X_FORWARDED_PROTO], "http");
        assert_eq!(h[X_FORWARDED_HOST], "a.example");
    }
}

//! Rules for values that parse but that the gateway could not run, or would
//! run wrongly without a word: two listeners on one address, a log filter
//! that names no level, a method nobody sends, a zero timeout.

use std::net::SocketAddr;
use std::str::FromStr;
use std::time::Duration;

use http::Method;
use tracing::level_filters::LevelFilter;

/// The first listener of `addrs` (key, address) that another one before it
/// already binds: same port (not 0, which picks a free one) on the same IP,
/// or on the wildcard address, which takes the port on every IP.
pub(super) fn listener_clash(
    addrs: &[(&'static str, SocketAddr)],
) -> Option<(&'static str, SocketAddr, &'static str)> {
    addrs.iter().enumerate().find_map(|(i, &(key, addr))| {
        addrs[..i].iter().find_map(|&(other, earlier)| {
            let overlap = addr.ip() == earlier.ip()
                || addr.ip().is_unspecified()
                || earlier.ip().is_unspecified();
            (addr.port() != 0 && addr.port() == earlier.port() && overlap)
                .then_some((key, addr, other))
        })
    })
}

/// `log.level` is an `EnvFilter`: levels and `target=level` directives. A
/// bare word that is not a level parses too, as a target to log at every
/// level, and everything else is then silent: `"verbose"` logged nothing, not
/// even the start line. So a bare word must be a level.
pub(super) fn log_filter(level: &str) -> Result<(), String> {
    if tracing_subscriber::EnvFilter::builder()
        .parse(level)
        .is_err()
    {
        return Err(format!("`{level}` is not a log filter"));
    }
    for directive in level.split(',').map(str::trim).filter(|d| !d.is_empty()) {
        if !directive.contains('=') && LevelFilter::from_str(directive).is_err() {
            return Err(format!(
                "`{directive}` is not a level: use off, error, warn, info, debug or trace, or TARGET=LEVEL (e.g. \"info,wxgate::access=off\")"
            ));
        }
    }
    Ok(())
}

/// The methods a route's `methods` may name: RFC 9110's and PATCH. An
/// unknown name in a list that restricts is a typo far more often than an
/// extension method; leaving `methods` out lets every method through,
/// extension ones included.
const STANDARD_METHODS: [Method; 8] = [
    Method::GET,
    Method::HEAD,
    Method::POST,
    Method::PUT,
    Method::DELETE,
    Method::OPTIONS,
    Method::TRACE,
    Method::PATCH,
];

pub(super) fn route_method(name: &str) -> Result<Method, String> {
    let upper = name.to_ascii_uppercase();
    STANDARD_METHODS
        .iter()
        .find(|m| m.as_str() == upper)
        .cloned()
        .ok_or_else(|| {
            format!(
                "`{name}` is not a standard method ({}); leave `methods` out to allow every method",
                STANDARD_METHODS.map(|m| m.to_string()).join(", ")
            )
        })
}

/// A timeout of zero would fail every request at once.
pub(super) fn nonzero(timeout: Duration) -> Result<Duration, String> {
    if timeout.is_zero() {
        Err("must be more than 0".to_owned())
    } else {
        Ok(timeout)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listeners() {
        let a = |s: &str| s.parse::<SocketAddr>().unwrap();
        let clash = |pairs: &[(&'static str, &str)]| {
            let addrs: Vec<_> = pairs.iter().map(|&(k, s)| (k, a(s))).collect();
            listener_clash(&addrs).map(|(k, _, other)| (k, other))
        };
        assert_eq!(
            clash(&[
                ("server.listen", "127.0.0.1:80"),
                ("admin.listen", "127.0.0.1:80")
            ]),
            Some(("admin.listen", "server.listen"))
        );
        assert_eq!(
            clash(&[
                ("server.listen", "[::]:80"),
                ("admin.listen", "127.0.0.1:80")
            ]),
            Some(("admin.listen", "server.listen"))
        );
        assert_eq!(
            clash(&[
                ("server.listen", "127.0.0.1:0"),
                ("admin.listen", "127.0.0.1:0")
            ]),
            None
        );
        assert_eq!(
            clash(&[
                ("server.listen", "127.0.0.1:80"),
                ("admin.listen", "127.0.0.2:80")
            ]),
            None
        );
    }

    #[test]
    fn log_filters() {
        for ok in [
            "info",
            "DEBUG",
            "warn,wxgate::access=off",
            "wxgate=debug",
            "off",
        ] {
            assert_eq!(log_filter(ok), Ok(()), "{ok}");
        }
        for bad in ["verbose", "info,hyper", "wxgate=loud"] {
            assert!(log_filter(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn methods() {
        assert_eq!(route_method("get"), Ok(Method::GET));
        assert_eq!(route_method("PATCH"), Ok(Method::PATCH));
        for bad in ["GETT", "CONNECT", "PROPFIND", "G ET", ""] {
            assert!(route_method(bad).is_err(), "{bad}");
        }
    }
}

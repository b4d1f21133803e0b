//! From a request's host and normalized path to what serves it: one of
//! wxgate's own endpoints, or the route with the longest matching prefix.

use http::Method;

use crate::config::{AuthConfig, RouteConfig};
use crate::error::Error;

/// Who answers a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    Login,
    Session,
    Logout,
    /// The JWK Set of the public signing keys.
    Jwks,
    /// The forward-auth check, `verify_path` or below it.
    Verify,
    /// Index into [`Router::routes`].
    Route(usize),
}

/// The route table, ordered once so that the first match is the best one.
#[derive(Debug)]
pub struct Router {
    routes: Vec<RouteConfig>,
    /// Routes with a `host`, longest path first.
    with_host: Vec<usize>,
    /// Routes without, longest path first.
    without_host: Vec<usize>,
    login: String,
    session: String,
    logout: String,
    jwks: String,
    verify: String,
}

impl Router {
    pub fn new(routes: Vec<RouteConfig>, auth: &AuthConfig) -> Router {
        let mut with_host: Vec<usize> = (0..routes.len())
            .filter(|&i| routes[i].host.is_some())
            .collect();
        let mut without_host: Vec<usize> = (0..routes.len())
            .filter(|&i| routes[i].host.is_none())
            .collect();
        let longest_first =
            |a: &usize, b: &usize| routes[*b].path.len().cmp(&routes[*a].path.len());
        with_host.sort_by(longest_first);
        without_host.sort_by(longest_first);
        Router {
            routes,
            with_host,
            without_host,
            login: auth.login_path.clone(),
            session: auth.session_path.clone(),
            logout: auth.logout_path.clone(),
            jwks: auth.jwks_path.clone(),
            verify: auth.verify_path.clone(),
        }
    }

    pub fn routes(&self) -> &[RouteConfig] {
        &self.routes
    }

    pub fn route(&self, index: usize) -> &RouteConfig {
        &self.routes[index]
    }

    /// `host` is the request's host without port; `path` is normalized.
    pub fn find(&self, host: Option<&str>, path: &str) -> Option<Target> {
        if path == self.login {
            return Some(Target::Login);
        }
        if path == self.session {
            return Some(Target::Session);
        }
        if path == self.logout {
            return Some(Target::Logout);
        }
        if path == self.jwks {
            return Some(Target::Jwks);
        }
        if prefix_matches(&self.verify, path) {
            return Some(Target::Verify);
        }
        if let Some(host) = host {
            let hit = self.with_host.iter().copied().find(|&i| {
                let r = &self.routes[i];
                r.host
                    .as_deref()
                    .is_some_and(|h| h.eq_ignore_ascii_case(host))
                    && prefix_matches(&r.path, path)
            });
            if let Some(i) = hit {
                return Some(Target::Route(i));
            }
        }
        self.without_host
            .iter()
            .copied()
            .find(|&i| prefix_matches(&self.routes[i].path, path))
            .map(Target::Route)
    }

    /// Does any route name this host? (Absolute-form targets must.)
    pub fn serves_host(&self, host: &str) -> bool {
        self.with_host.iter().any(|&i| {
            self.routes[i]
                .host
                .as_deref()
                .is_some_and(|h| h.eq_ignore_ascii_case(host))
        })
    }
}

/// 405 with the route's `Allow` unless its `methods` include `method`.
pub fn check_method(route: &RouteConfig, method: &Method) -> Result<(), Error> {
    match (&route.methods, &route.allow) {
        (Some(methods), Some(allow)) if !methods.contains(method) => {
            Err(Error::MethodNotAllowed(allow.clone()))
        }
        _ => Ok(()),
    }
}

/// `/api` matches `/api` and `/api/x`, not `/apix`; `/` matches everything.
pub fn prefix_matches(prefix: &str, path: &str) -> bool {
    prefix == "/"
        || (path.starts_with(prefix)
            && (path.len() == prefix.len() || path.as_bytes()[prefix.len()] == b'/'))
}

/// The path the upstream receives: base path, then the request path (minus
/// the route's prefix with `strip_prefix`), then the query unchanged.
pub fn upstream_path_and_query(route: &RouteConfig, path: &str, query: Option<&str>) -> String {
    let rest = if route.strip_prefix && route.path != "/" {
        &path[route.path.len()..]
    } else {
        path
    };
    let rest = if rest.is_empty() { "/" } else { rest };
    let base = &route.upstream.base_path;
    let mut out = String::with_capacity(base.len() + rest.len() + query.map_or(0, |q| q.len() + 1));
    out.push_str(base);
    out.push_str(rest);
    if let Some(q) = query {
        out.push('?');
        out.push_str(q);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{AuthMode, TokenHeader, Upstream};
    use std::time::Duration;

    fn route(path: &str, host: Option<&str>, upstream: &str, strip: bool) -> RouteConfig {
        let uri: http::Uri = upstream.parse().unwrap();
        RouteConfig {
            path: path.into(),
            upstream: Upstream {
                scheme: uri.scheme().unwrap().clone(),
                authority: uri.authority().unwrap().clone(),
                base_path: uri.path().trim_end_matches('/').into(),
                host_header: http::HeaderValue::from_str(uri.authority().unwrap().as_str())
                    .unwrap(),
                ca_file: None,
            },
            auth: AuthMode::Required,
            methods: None,
            allow: None,
            host: host.map(str::to_owned),
            strip_prefix: strip,
            timeout: Duration::from_secs(1),
            forward_token: false,
            apps: None,
        }
    }

    fn auth() -> AuthConfig {
        AuthConfig {
            login_path: "/auth/login".into(),
            session_path: "/auth/session".into(),
            logout_path: "/auth/logout".into(),
            jwks_path: "/.well-known/jwks.json".into(),
            verify_path: "/auth/verify".into(),
            token_header: TokenHeader::Bearer,
            login_rate_limit: None,
        }
    }

    #[test]
    fn longest_prefix_on_segment_boundary() {
        let r = Router::new(
            vec![
                route("/api", None, "http://a", false),
                route("/api/public", None, "http://b", false),
                route("/", None, "http://c", false),
            ],
            &auth(),
        );
        let path_of = |p: &str| match r.find(None, p) {
            Some(Target::Route(i)) => r.route(i).path.clone(),
            other => format!("{other:?}"),
        };
        assert_eq!(path_of("/api"), "/api");
        assert_eq!(path_of("/api/x"), "/api");
        assert_eq!(path_of("/apix"), "/");
        assert_eq!(path_of("/api/public"), "/api/public");
        assert_eq!(path_of("/api/public/x"), "/api/public");
        assert_eq!(path_of("/api/publicx"), "/api");
        assert_eq!(r.find(None, "/auth/login"), Some(Target::Login));
        assert_eq!(r.find(None, "/.well-known/jwks.json"), Some(Target::Jwks));
        assert_eq!(r.find(None, "/auth/verify"), Some(Target::Verify));
        assert_eq!(r.find(None, "/auth/verify/api/x"), Some(Target::Verify));
        assert_eq!(path_of("/auth/verifyx"), "/");
    }

    #[test]
    fn host_routes_first_then_hostless() {
        let r = Router::new(
            vec![
                route("/", Some("a.example"), "http://a", false),
                route("/api", None, "http://b", false),
            ],
            &auth(),
        );
        // A host route wins even with a shorter path.
        assert_eq!(r.find(Some("A.Example"), "/api/x"), Some(Target::Route(0)));
        assert_eq!(r.find(Some("b.example"), "/api/x"), Some(Target::Route(1)));
        assert_eq!(r.find(Some("b.example"), "/other"), None);
        assert!(r.serves_host("a.example"));
        assert!(!r.serves_host("evil.example"));
    }

    #[test]
    fn upstream_paths() {
        let plain = route("/api", None, "http://u:1/base", false);
        assert_eq!(
            upstream_path_and_query(&plain, "/api/x", Some("a=1")),
            "/base/api/x?a=1"
        );
        let strip = route("/api", None, "http://u:1/base", true);
        assert_eq!(upstream_path_and_query(&strip, "/api/x", None), "/base/x");
        assert_eq!(upstream_path_and_query(&strip, "/api", None), "/base/");
        let strip_root = route("/api", None, "http://u:1", true);
        assert_eq!(
            upstream_path_and_query(&strip_root, "/api", Some("q")),
            "/?q"
        );
        let root = route("/", None, "http://u:1", true);
        assert_eq!(upstream_path_and_query(&root, "/x/y", None), "/x/y");
    }
}

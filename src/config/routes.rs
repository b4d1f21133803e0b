//! Validation of `[[routes]]`: paths, upstream URLs, methods, hosts,
//! per-route timeouts and apps.

use super::*;

impl Builder<'_> {
    pub(super) fn routes(
        &self,
        raw: Vec<RawRoute>,
        server: &ServerConfig,
        apps: &[AppConfig],
    ) -> Result<Vec<RouteConfig>> {
        let mut seen = HashSet::new();
        raw.into_iter()
            .enumerate()
            .map(|(i, r)| {
                let entry = self.at(i);
                let route = entry.route(r, server, apps)?;
                if !seen.insert((route.host.clone(), route.path.clone())) {
                    return Err(entry.err(
                        "routes.path",
                        format!(
                            "another route before this one has path `{}` and the same host",
                            route.path
                        ),
                    ));
                }
                Ok(route)
            })
            .collect()
    }

    fn route(&self, r: RawRoute, server: &ServerConfig, apps: &[AppConfig]) -> Result<RouteConfig> {
        let raw_path = r.path.0;
        let path = match path::normalize(&raw_path) {
            // Written normalized, so the file says what is matched.
            Ok(p) if raw_path.starts_with('/') && p == raw_path => {
                let trimmed = p.trim_end_matches('/');
                if trimmed.is_empty() {
                    "/".to_owned()
                } else {
                    trimmed.to_owned()
                }
            }
            _ => {
                return Err(self.err(
                    "routes.path",
                    format!("`{raw_path}` is not an absolute path without `..`, `%2F` or `\\`"),
                ))
            }
        };
        let key = |k: &str| format!("routes.{k}");
        let mut upstream =
            parse_upstream(&r.upstream.0).map_err(|m| self.err(key("upstream"), m))?;
        if let Some(file) = r.ca_file {
            if upstream.scheme != http::uri::Scheme::HTTPS {
                return Err(self.err(key("ca_file"), "only an https upstream uses a CA file"));
            }
            let ca = CaFile::load(self.base_dir.join(file.0));
            upstream.ca_file = Some(ca.map_err(|m| self.err(key("ca_file"), m))?);
        }
        let auth = match r.auth.as_ref().map(|s| s.0.as_str()) {
            None | Some("required") => AuthMode::Required,
            Some("optional") => AuthMode::Optional,
            Some("none") => AuthMode::None,
            Some(other) => {
                return Err(self.err(
                    key("auth"),
                    format!("`{other}`: expected \"none\", \"optional\" or \"required\""),
                ))
            }
        };
        let methods = match r.methods {
            None => None,
            Some(list) if list.is_empty() => {
                return Err(self.err(key("methods"), "an empty list would refuse everything"))
            }
            Some(list) => Some(
                list.into_iter()
                    .map(|m| checks::route_method(&m.0).map_err(|e| self.err(key("methods"), e)))
                    .collect::<Result<Vec<_>>>()?,
            ),
        };
        let allow = methods.as_ref().map(|list| {
            let text = list
                .iter()
                .map(Method::as_str)
                .collect::<Vec<_>>()
                .join(", ");
            HeaderValue::from_str(&text).expect("method names are valid header text")
        });
        let host = match r.host {
            None => None,
            // Normalized as a request's host is: no trailing dot, no case.
            Some(h) => match crate::http::host::Host::parse(&h.0) {
                Ok(Some(host)) if host.port.is_none() => Some(host.name.to_ascii_lowercase()),
                Ok(Some(host)) => {
                    return Err(self.err(
                        key("host"),
                        format!(
                            "`{}`: hosts are matched without their port; write `{}`",
                            h.0, host.name
                        ),
                    ))
                }
                _ => return Err(self.err(key("host"), format!("`{}` is not a host name", h.0))),
            },
        };
        let timeout = match r.timeout {
            Some(t) => self.timeout(&key("timeout"), Some(t), "")?,
            None => server.request_timeout,
        };
        let route_apps = match r.apps {
            None => None,
            Some(list) => Some(
                list.into_iter()
                    .map(|a| {
                        if apps.iter().any(|app| app.appid == a.0) {
                            Ok(a.0)
                        } else {
                            Err(self.err(
                                key("apps"),
                                format!("`{}` is not an appid from [[apps]]", a.0),
                            ))
                        }
                    })
                    .collect::<Result<Vec<_>>>()?,
            ),
        };
        Ok(RouteConfig {
            path,
            upstream,
            auth,
            methods,
            allow,
            host,
            strip_prefix: r.strip_prefix,
            timeout,
            forward_token: r.forward_token,
            apps: route_apps,
        })
    }
}

fn parse_upstream(s: &str) -> std::result::Result<Upstream, String> {
    let uri: http::Uri = s
        .parse()
        .map_err(|_| format!("`{s}` is not a URL like \"http://127.0.0.1:9000\""))?;
    let scheme = uri
        .scheme()
        .cloned()
        .ok_or_else(|| format!("`{s}` has no scheme"))?;
    if scheme != http::uri::Scheme::HTTP && scheme != http::uri::Scheme::HTTPS {
        return Err(format!("`{s}`: the scheme must be http or https"));
    }
    let authority = uri
        .authority()
        .cloned()
        .filter(|a| !a.host().is_empty())
        .ok_or_else(|| format!("`{s}` has no host"))?;
    if authority.port_u16() == Some(0) {
        return Err(format!("`{s}` has port 0, which nothing listens on"));
    }
    if authority.as_str().contains('@') {
        return Err(format!("`{s}`: credentials in the URL are not supported"));
    }
    if uri.query().is_some() {
        return Err(format!("`{s}`: an upstream URL cannot carry a query"));
    }
    let base_path = match path::normalize(uri.path()) {
        Ok(p) => p.trim_end_matches('/').to_owned(),
        Err(e) => return Err(format!("`{s}`: {e}")),
    };
    let host_header = HeaderValue::from_str(authority.as_str())
        .map_err(|_| format!("`{s}`: the host is not valid in a header"))?;
    Ok(Upstream {
        scheme,
        authority,
        base_path,
        host_header,
        ca_file: None,
    })
}

impl fmt::Display for Upstream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}://{}{}", self.scheme, self.authority, self.base_path)
    }
}

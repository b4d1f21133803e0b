//! Live reload (SIGHUP): read the config file again and put it in force in
//! one atomic swap of the [`Snapshot`](crate::state::Snapshot). Routes, apps,
//! keys, identity header names, the login rate limit, trusted proxies and
//! WeChat settings change for every request that starts afterwards; a
//! request in flight finishes on the runtime it started with.
//!
//! Settings read only at start-up (listeners, TLS on or off, the connection
//! limits and timeouts, the store's size, logging, `[dev]`) keep their
//! running values: a change to them is named in a warning and waits for a
//! restart, and the running config keeps saying what is really in force.
//! A new certificate takes effect at once, for new connections.

use crate::config::Config;
use crate::state::Gateway;

/// Loads the file the running config came from and puts it in force. A file
/// that fails validation changes nothing. Counted in
/// `wxgate_config_reloads_total`.
pub fn from_file(gw: &Gateway) -> Result<(), String> {
    let result = apply(gw);
    gw.metrics().count_reload(result.is_ok());
    result
}

fn apply(gw: &Gateway) -> Result<(), String> {
    let current = gw.snapshot();
    let mut config = Config::load(&current.config.source).map_err(|e| e.to_string())?;
    let pending = keep_startup_settings(&mut config, &current.config);
    if !pending.is_empty() {
        tracing::warn!(
            keys = %pending.join(", "),
            "these settings are read at start-up only: their new values take effect at the next restart"
        );
    }
    gw.install(config)
}

/// Puts `old`'s start-up-only settings back into `new`; returns the keys
/// whose value differed.
pub fn keep_startup_settings(new: &mut Config, old: &Config) -> Vec<&'static str> {
    let mut changed = Vec::new();
    fn keep<T: PartialEq + Clone>(
        changed: &mut Vec<&'static str>,
        key: &'static str,
        new: &mut T,
        old: &T,
    ) {
        if new != old {
            changed.push(key);
            new.clone_from(old);
        }
    }
    let (n, o) = (&mut new.server, &old.server);
    keep(&mut changed, "server.listen", &mut n.listen, &o.listen);
    // Whether the listener speaks TLS is fixed at start; the certificate
    // and key (paths or contents) follow reloads, for new connections.
    if new.server.tls.is_some() != old.server.tls.is_some() {
        changed.push("server.tls_cert/tls_key (TLS on or off)");
        new.server.tls.clone_from(&old.server.tls);
    }
    let (n, o) = (&mut new.server, &old.server);
    keep(
        &mut changed,
        "server.header_timeout",
        &mut n.header_timeout,
        &o.header_timeout,
    );
    keep(
        &mut changed,
        "server.max_header_bytes",
        &mut n.max_header_bytes,
        &o.max_header_bytes,
    );
    keep(
        &mut changed,
        "server.max_connections",
        &mut n.max_connections,
        &o.max_connections,
    );
    keep(
        &mut changed,
        "server.idle_timeout",
        &mut n.idle_timeout,
        &o.idle_timeout,
    );
    keep(
        &mut changed,
        "server.connect_timeout",
        &mut n.connect_timeout,
        &o.connect_timeout,
    );
    keep(
        &mut changed,
        "server.shutdown_grace",
        &mut n.shutdown_grace,
        &o.shutdown_grace,
    );
    let admin = |c: &Config| c.admin.as_ref().map(|a| a.listen);
    if admin(new) != admin(old) {
        changed.push("admin.listen");
        new.admin.clone_from(&old.admin);
    }
    // The internal listener is bound at start: a reload cannot open it,
    // nor move it. Its other keys (allow, token, limits) follow reloads;
    // one that removes [internal] leaves the port open, refusing everyone.
    match (&mut new.internal, &old.internal) {
        (Some(n), Some(o)) if n.listen != o.listen => {
            changed.push("internal.listen");
            n.listen = o.listen;
        }
        (Some(_), None) => {
            changed.push("internal (turned on)");
            new.internal = None;
        }
        (None, Some(_)) => changed.push("internal (turned off: refused until a restart)"),
        _ => {}
    }
    // The store outlives configs: its backend and size are fixed at start.
    keep(&mut changed, "store", &mut new.store, &old.store);
    let log = |c: &Config| {
        (
            c.log.level.clone(),
            c.log.format,
            c.log.access,
            c.log.openid.clone(),
        )
    };
    if log(new) != log(old) {
        changed.push("log");
        new.log.clone_from(&old.log);
    }
    let dev = |c: &Config| (c.dev.simulate_wechat, c.dev.echo_upstream);
    if dev(new) != dev(old) {
        changed.push("dev");
        new.dev.clone_from(&old.dev);
    }
    changed
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn parse(extra: &str) -> Config {
        let text = format!(
            r#"
[server]
listen = "127.0.0.1:8080"
{extra}
[[apps]]
appid = "wx0123456789abcdef"
secret = "s"
[token]
[[token.keys]]
id = "k1"
secret = "0123456789abcdef0123456789abcdef"
[[routes]]
path = "/api"
upstream = "http://127.0.0.1:9000"
"#
        );
        Config::parse_with_env(&text, Path::new("t.toml"), Some(Default::default())).unwrap()
    }

    #[test]
    fn startup_settings_keep_their_running_values() {
        let old = parse("");
        let mut new = parse("header_timeout = \"1s\"\nmax_connections = 5\n");
        new.server.listen = "127.0.0.1:9090".parse().unwrap();
        new.routes.clear();
        let changed = keep_startup_settings(&mut new, &old);
        assert_eq!(
            changed,
            [
                "server.listen",
                "server.header_timeout",
                "server.max_connections"
            ]
        );
        assert_eq!(new.server.listen, old.server.listen);
        assert_eq!(new.server.header_timeout, old.server.header_timeout);
        assert_eq!(new.server.max_connections, old.server.max_connections);
        // What reloads is left alone.
        assert!(new.routes.is_empty());
        assert!(keep_startup_settings(&mut parse(""), &old).is_empty());
    }

    #[test]
    fn the_internal_listener_is_bound_once() {
        let on = parse("[internal]\nlisten = \"127.0.0.1:9402\"\n");
        let mut moved = parse("[internal]\nlisten = \"127.0.0.1:9403\"\nmax_body = 2048\n");
        assert_eq!(keep_startup_settings(&mut moved, &on), ["internal.listen"]);
        let moved = moved.internal.unwrap();
        assert_eq!(moved.listen, on.internal.as_ref().unwrap().listen);
        assert_eq!(moved.max_body, 2048);
        let mut turned_on = on.clone();
        assert_eq!(keep_startup_settings(&mut turned_on, &parse("")).len(), 1);
        assert!(turned_on.internal.is_none());
        let mut turned_off = parse("");
        assert_eq!(keep_startup_settings(&mut turned_off, &on).len(), 1);
        assert!(turned_off.internal.is_none());
    }
}

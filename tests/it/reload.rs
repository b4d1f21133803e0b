//! Live reload with real SIGHUPs on the real binary: what changes, what a
//! request in flight keeps, what a bad file or a start-up-only setting does,
//! and how it shows in the metrics.

use std::path::Path;
use std::time::Duration;

use crate::common::process::*;
use crate::common::prom::{scrape, Scrape};
use crate::common::upstream::Upstream;
use crate::common::*;

const OTHER_KEY: &str = "a-second-signing-key-0123456789abcdef";

fn mint(config_text: &str, openid: &str) -> String {
    let config =
        wxgate::Config::parse_with_env(config_text, Path::new("t.toml"), Some(Default::default()))
            .unwrap();
    let keys = wxgate::auth::token::Keys::new(&config.token, config.appids());
    keys.mint(
        openid,
        APPID,
        None,
        Duration::from_secs(600),
        wxgate::auth::token::now(),
    )
    .unwrap()
    .0
}

fn route(path: &str, upstream: &str) -> String {
    format!("\n[[routes]]\npath = \"{path}\"\nupstream = \"{upstream}\"\nauth = \"required\"\n")
}

/// A GET's status; the request is built at once, so the future can be spawned.
fn get(url: String, token: Option<&str>) -> impl std::future::Future<Output = u16> + 'static {
    let mut req = client().get(url);
    if let Some(token) = token {
        req = req.bearer_auth(token);
    }
    async move { req.send().await.unwrap().status().as_u16() }
}

fn reloads(m: &Scrape, result: &str) -> f64 {
    m.value("wxgate_config_reloads_total", &[("result", result)])
}

fn requests(m: &Scrape, route: &str, status: &str) -> f64 {
    m.value(
        "wxgate_requests_total",
        &[("route", route), ("status", status)],
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_in_flight_finishes_on_the_config_it_started_with() {
    let up = Upstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    let old = format!("{}{}", run_config(&up.url()), route("/old", &up.url()));
    let path = write_config(dir.path(), &old);
    let mut proc = Proc::start(&path);
    let (listen, admin) = proc.addresses();
    let url = |p: &str| format!("http://{listen}{p}");
    let old_token = mint(&old, "o-held");

    let held = tokio::spawn(get(url("/old/hold"), Some(&old_token)));
    let first = up.next_request().await;
    assert_eq!(first.header("x-wx-openid"), Some("o-held"));

    // /old is gone, the openid header and the signing key change.
    let new = format!(
        "{}\n[identity]\nopenid_header = \"X-User-OpenID\"\n",
        run_config(&up.url()).edit(JWT_SECRET, OTHER_KEY)
    )
    .edit("id = \"k1\"", "id = \"k2\"");
    std::fs::write(&path, &new).unwrap();
    proc.signal("HUP");
    proc.wait_for("config reloaded");

    assert_eq!(get(url("/old/x"), Some(&old_token)).await, 404);
    assert_eq!(
        get(url("/api/x"), Some(&old_token)).await,
        401,
        "k1 is gone"
    );
    let new_token = mint(&new, "o-new");
    assert_eq!(get(url("/api/x"), Some(&new_token)).await, 200);
    let fresh = up.next_request().await;
    assert_eq!(fresh.header("x-user-openid"), Some("o-new"));
    assert_eq!(fresh.header("x-wx-openid"), None);

    up.release_hold();
    assert_eq!(held.await.unwrap(), 200, "the held request completes");

    let m = scrape(&format!("http://{admin}/metrics")).await;
    assert_eq!(requests(&m, "/old", "200"), 1.0, "counted on its old route");
    assert_eq!(requests(&m, "none", "404"), 1.0);
    assert_eq!(requests(&m, "/api", "401"), 1.0);
    assert_eq!(requests(&m, "/api", "200"), 1.0);
    assert_eq!(reloads(&m, "ok"), 1.0);
    assert_eq!(reloads(&m, "error"), 0.0);

    let lines = proc.stop();
    let held_line = lines
        .iter()
        .find(|l| l.contains("wxgate::access") && l.contains("route=/old"))
        .unwrap_or_else(|| panic!("no access line for /old:\n{}", lines.join("\n")));
    assert!(held_line.contains("status=200"), "{held_line}");
    assert!(held_line.contains("openid=o-held"), "{held_line}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_file_is_counted_and_listener_changes_wait_for_a_restart() {
    let up = Upstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    let text = run_config(&up.url());
    let path = write_config(dir.path(), &text);
    let mut proc = Proc::start(&path);
    let (listen, admin) = proc.addresses();
    let url = |p: &str| format!("http://{listen}{p}");
    let metrics_url = format!("http://{admin}/metrics");
    for _ in 0..2 {
        assert_eq!(get(url("/public/x"), None).await, 200);
    }

    std::fs::write(&path, "[server]\nlisten = 5\n").unwrap();
    proc.signal("HUP");
    let line = proc.wait_for("config reload failed");
    assert!(line.contains("server.listen"), "{line}");
    assert_eq!(get(url("/public/x"), None).await, 200);
    let m = scrape(&metrics_url).await;
    assert_eq!(reloads(&m, "error"), 1.0);
    assert_eq!(reloads(&m, "ok"), 0.0);

    // New listen addresses and a new route: the route is in force at once,
    // the addresses only after a restart.
    let (new_listen, new_admin) = (closed_port(), closed_port());
    let moved = format!("{}{}", text, route("/extra", &up.url()))
        .replacen(
            "listen = \"127.0.0.1:0\"",
            &format!("listen = \"{new_listen}\""),
            1,
        )
        .replacen(
            "listen = \"127.0.0.1:0\"",
            &format!("listen = \"{new_admin}\""),
            1,
        );
    std::fs::write(&path, moved).unwrap();
    proc.signal("HUP");
    let warning = proc.wait_for("next restart");
    assert!(warning.contains("WARN"), "{warning}");
    assert!(
        warning.contains("server.listen") && warning.contains("admin.listen"),
        "{warning}"
    );
    proc.wait_for("config reloaded");
    assert_eq!(get(url("/extra/x"), None).await, 401, "the new route");
    assert_eq!(get(url("/public/x"), None).await, 200);
    for addr in [new_listen, new_admin] {
        assert!(
            tokio::net::TcpStream::connect(addr).await.is_err(),
            "{addr} is not served before a restart"
        );
    }
    let m = scrape(&metrics_url).await;
    assert_eq!(reloads(&m, "ok"), 1.0);
    assert_eq!(reloads(&m, "error"), 1.0);
    // The series of a route that survived the reloads kept counting.
    assert_eq!(requests(&m, "/public", "200"), 4.0);
    assert_eq!(requests(&m, "/extra", "401"), 1.0);
    proc.stop();
}

fn run_config(upstream: &str) -> String {
    base_config(upstream, &nowhere())
}

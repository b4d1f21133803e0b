//! A real nginx, as a child process of the test, for tests of the snippets
//! under `deploy/`.
//!
//! nginx runs in the foreground as one process (`daemon off;
//! master_process off;`, so killing it leaves no worker behind) with every
//! path (prefix, config, pid, error log, temp files) in a temp directory;
//! nothing needs root. nginx cannot report the port of a `listen ...:0`, and
//! this nginx crashes on inherited sockets without a master process, so a
//! free port is picked and the start retried when nginx loses it to another
//! process. Readiness is an answer from nginx, polled with a deadline.
//!
//! The tests that use it are `#[ignore = "needs nginx ..."]`, so a plain
//! `cargo test` reports them as not run; run with `--include-ignored`
//! (as `.ci/run` does, after installing nginx) without nginx, they fail.
#![allow(dead_code)]

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use tempfile::TempDir;

/// Attempts to start before giving up on finding a free port.
const ATTEMPTS: usize = 5;
const START_DEADLINE: Duration = Duration::from_secs(10);

pub struct Nginx {
    pub addr: SocketAddr,
    child: Child,
    dir: TempDir,
}

impl Nginx {
    /// Runs nginx with `http` (given the address to listen on) as the body
    /// of its `http {}` block.
    pub async fn start(http: impl Fn(SocketAddr) -> String) -> Nginx {
        let bin = find_nginx().unwrap_or_else(|| {
            panic!("nginx is not installed: install Debian's nginx-light (apt-get install nginx-light) or set NGINX_BIN")
        });
        for _ in 0..ATTEMPTS {
            let addr = free_port();
            let dir = tempfile::tempdir().expect("temp dir");
            let conf = dir.path().join("nginx.conf");
            std::fs::write(&conf, config(dir.path(), &http(addr))).expect("write nginx.conf");
            let child = Command::new(&bin)
                .arg("-p")
                .arg(dir.path())
                .arg("-c")
                .arg(&conf)
                .arg("-e")
                .arg(dir.path().join("error.log"))
                .args(["-g", "daemon off; master_process off;"])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap_or_else(|e| panic!("cannot run {}: {e}", bin.display()));
            let mut nginx = Nginx { addr, child, dir };
            match nginx.wait_ready().await {
                Ok(()) => return nginx,
                Err(log) if log.contains("Address already in use") => continue,
                Err(log) => panic!("nginx did not start:\n{log}"),
            }
        }
        panic!("nginx found no free port in {ATTEMPTS} attempts");
    }

    /// Polls until nginx answers, or it exits (Err: its error log).
    async fn wait_ready(&mut self) -> Result<(), String> {
        let deadline = tokio::time::Instant::now() + START_DEADLINE;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return Err(format!("nginx exited ({status}):\n{}", self.error_log()));
            }
            if answers_as_nginx(self.addr).await {
                return Ok(());
            }
            if tokio::time::Instant::now() > deadline {
                panic!(
                    "nginx not ready after {START_DEADLINE:?}:\n{}",
                    self.error_log()
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    pub fn error_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("error.log")).unwrap_or_default()
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `$NGINX_BIN`, else `nginx` on the PATH, else the usual sbin locations
/// (not on a normal user's PATH).
fn find_nginx() -> Option<PathBuf> {
    if let Some(bin) = std::env::var_os("NGINX_BIN") {
        return Some(PathBuf::from(bin));
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/usr/local/sbin", "/usr/local/nginx/sbin"].map(PathBuf::from))
        .map(|dir| dir.join("nginx"))
        .find(|candidate| candidate.is_file())
}

fn free_port() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    listener.local_addr().expect("local_addr")
}

/// Any HTTP answer with `Server: nginx...` (not some other process that
/// took the port).
async fn answers_as_nginx(addr: SocketAddr) -> bool {
    if tokio::net::TcpStream::connect(addr).await.is_err() {
        return false;
    }
    let request = super::http_request("GET", "/", &[("Host", "nginx-ready.invalid")]);
    let answer = super::raw(addr, &request).await;
    answer.lines().any(|l| {
        l.split_once(':')
            .is_some_and(|(n, v)| n.eq_ignore_ascii_case("server") && v.trim().starts_with("nginx"))
    })
}

fn config(dir: &Path, http: &str) -> String {
    let d = dir.display();
    format!(
        r#"pid {d}/nginx.pid;
error_log {d}/error.log info;
events {{ worker_connections 256; }}
http {{
    access_log {d}/access.log;
    client_body_temp_path {d}/client_body;
    proxy_temp_path {d}/proxy;
    fastcgi_temp_path {d}/fastcgi;
    uwsgi_temp_path {d}/uwsgi;
    scgi_temp_path {d}/scgi;
{http}
}}
"#
    )
}

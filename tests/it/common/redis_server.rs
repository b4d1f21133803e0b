//! A real redis-server, as a child process of the test, for the Redis
//! store's tests: never a mock.
//!
//! redis-server cannot report the port of `--port 0`, so a free port is
//! picked (bind 127.0.0.1:0, release) and the start retried on another port
//! when redis loses it to another process. No persistence (`--save ''
//! --appendonly no`), files in a temp directory. Readiness is a PONG, polled
//! with a deadline.
//!
//! Every test that uses it is `#[ignore = "needs redis-server"]`; when it
//! runs without the binary it panics naming the Debian package (`.ci/run`
//! installs it).
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

const ATTEMPTS: usize = 5;
const START_DEADLINE: Duration = Duration::from_secs(10);

pub struct RedisServer {
    pub addr: SocketAddr,
    child: Option<Child>,
    dir: TempDir,
    /// More redis-server arguments (`--requirepass`, say).
    extra: Vec<String>,
    /// Listening with TLS only (`rediss://`).
    tls: bool,
}

fn binary() -> PathBuf {
    if let Some(bin) = std::env::var_os("REDIS_SERVER_BIN") {
        return bin.into();
    }
    let found = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .chain([PathBuf::from("/usr/bin"), PathBuf::from("/usr/sbin")])
        .map(|dir| dir.join("redis-server"))
        .find(|p| p.is_file());
    found.unwrap_or_else(|| {
        panic!(
            "redis-server not found: install Debian's redis-server \
             (apt-get install redis-server) or set REDIS_SERVER_BIN"
        )
    })
}

fn free_port() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap()
}

impl RedisServer {
    /// A fresh, empty redis-server on a free port.
    pub fn start() -> RedisServer {
        Self::start_with(&[])
    }

    /// The same, with more redis-server arguments.
    pub fn start_with(extra: &[&str]) -> RedisServer {
        for _ in 0..ATTEMPTS {
            let dir = tempfile::tempdir().expect("temp dir");
            let mut server = RedisServer {
                addr: free_port(),
                child: None,
                dir,
                extra: extra.iter().map(|a| a.to_string()).collect(),
                tls: false,
            };
            match server.spawn() {
                Ok(()) => return server,
                Err(log) if log.contains("Address already in use") => continue,
                Err(log) => panic!("redis-server did not start:\n{log}"),
            }
        }
        panic!("redis-server found no free port in {ATTEMPTS} attempts");
    }

    /// TLS only, with the certificate `cert` and key `key` (PEM files):
    /// no plain-text port.
    pub fn start_tls(cert: &std::path::Path, key: &std::path::Path) -> RedisServer {
        for _ in 0..ATTEMPTS {
            let mut server = RedisServer {
                addr: free_port(),
                child: None,
                dir: tempfile::tempdir().expect("temp dir"),
                extra: Vec::new(),
                tls: true,
            };
            server.extra = vec![
                "--tls-port".into(),
                server.addr.port().to_string(),
                "--tls-cert-file".into(),
                cert.display().to_string(),
                "--tls-key-file".into(),
                key.display().to_string(),
                "--tls-auth-clients".into(),
                "no".into(),
            ];
            match server.spawn() {
                Ok(()) => return server,
                Err(log) if log.contains("Address already in use") => continue,
                Err(log) => panic!("redis-server (TLS) did not start:\n{log}"),
            }
        }
        panic!("redis-server found no free port in {ATTEMPTS} attempts");
    }

    /// Runs redis-server on `self.addr`; Err: its log.
    fn spawn(&mut self) -> Result<(), String> {
        let log = self.dir.path().join("redis.log");
        let port = if self.tls {
            "0".to_owned()
        } else {
            self.addr.port().to_string()
        };
        let child = Command::new(binary())
            .args(["--bind", "127.0.0.1", "--port"])
            .arg(port)
            .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
            .arg("--dir")
            .arg(self.dir.path())
            .arg("--logfile")
            .arg(&log)
            .args(&self.extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run redis-server: {e}"));
        self.child = Some(child);
        let deadline = Instant::now() + START_DEADLINE;
        loop {
            // With a password, the refusal is an answer too. Over TLS, the
            // log says it (this harness speaks no TLS).
            let ready = if self.tls {
                std::fs::read_to_string(&log)
                    .is_ok_and(|l| l.contains("Ready to accept connections"))
            } else {
                let answer = self.command(&["PING"]);
                answer.is_some_and(|r| r.starts_with("+PONG") || r.starts_with("-NOAUTH"))
            };
            if ready {
                return Ok(());
            }
            let exited = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
                .is_some();
            if exited || Instant::now() > deadline {
                self.kill();
                return Err(std::fs::read_to_string(&log).unwrap_or_default());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// `redis://127.0.0.1:<port>/0` (`rediss://` over TLS).
    pub fn url(&self) -> String {
        let scheme = if self.tls { "rediss" } else { "redis" };
        format!("{scheme}://{}/0", self.addr)
    }

    /// Kills redis-server (SIGKILL) and waits for it: connections drop at
    /// once, and whatever it held is gone.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts an empty redis-server on the same port again.
    pub fn restart(&mut self) {
        self.kill();
        let deadline = Instant::now() + START_DEADLINE;
        loop {
            match self.spawn() {
                Ok(()) => return,
                // The old socket may linger a moment.
                Err(log) if log.contains("Address already in use") && Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(100));
                }
                Err(log) => panic!("redis-server did not restart:\n{log}"),
            }
        }
    }

    /// One command in RESP; the raw reply (`None` if nothing answered).
    pub fn command(&self, args: &[&str]) -> Option<String> {
        let mut stream = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1)).ok()?;
        stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
        let mut out = format!("*{}\r\n", args.len());
        for a in args {
            out.push_str(&format!("${}\r\n{a}\r\n", a.len()));
        }
        stream.write_all(out.as_bytes()).ok()?;
        let mut buf = [0u8; 4096];
        let n = stream.read(&mut buf).ok()?;
        (n > 0).then(|| String::from_utf8_lossy(&buf[..n]).into_owned())
    }

    /// A client of the redis crate, for reading what wxgate wrote.
    pub async fn connection(&self) -> redis::aio::MultiplexedConnection {
        redis::Client::open(self.url())
            .unwrap()
            .get_multiplexed_async_connection()
            .await
            .expect("connect to the test redis-server")
    }

    /// Every key and each value's bytes (strings, sorted-set members and
    /// scores, hash fields and values, list and set members).
    pub async fn dump(&self) -> Vec<(Vec<u8>, Vec<Vec<u8>>)> {
        let mut conn = self.connection().await;
        let keys: Vec<Vec<u8>> = redis::cmd("KEYS")
            .arg("*")
            .query_async(&mut conn)
            .await
            .unwrap();
        let mut out = Vec::new();
        for key in keys {
            let kind: String = redis::cmd("TYPE")
                .arg(&key)
                .query_async(&mut conn)
                .await
                .unwrap();
            let values: Vec<Vec<u8>> = match kind.as_str() {
                "string" => vec![redis::cmd("GET")
                    .arg(&key)
                    .query_async(&mut conn)
                    .await
                    .unwrap()],
                "zset" => redis::cmd("ZRANGE")
                    .arg(&key)
                    .arg(0)
                    .arg(-1)
                    .arg("WITHSCORES")
                    .query_async(&mut conn)
                    .await
                    .unwrap(),
                "hash" => redis::cmd("HGETALL")
                    .arg(&key)
                    .query_async(&mut conn)
                    .await
                    .unwrap(),
                "list" => redis::cmd("LRANGE")
                    .arg(&key)
                    .arg(0)
                    .arg(-1)
                    .query_async(&mut conn)
                    .await
                    .unwrap(),
                "set" => redis::cmd("SMEMBERS")
                    .arg(&key)
                    .query_async(&mut conn)
                    .await
                    .unwrap(),
                other => panic!("unexpected Redis type {other}"),
            };
            out.push((key, values));
        }
        out
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

//! The real `wxgate` binary as a child process: its stderr (the log) read
//! line by line, real signals, its exit code.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

pub const BIN: &str = env!("CARGO_BIN_EXE_wxgate");

pub fn write_config(dir: &Path, text: &str) -> PathBuf {
    let path = dir.join("gateway.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// A running `wxgate` process whose stderr lines arrive on a channel.
pub struct Proc {
    child: Option<Child>,
    pid: u32,
    lines: mpsc::Receiver<String>,
    /// Every stderr line read so far.
    pub seen: Vec<String>,
}

impl Proc {
    /// Runs the gateway on `config` with `RUST_LOG=info`.
    pub fn start(config: &Path) -> Proc {
        Self::start_with_log(config, "info")
    }

    /// Runs the gateway on `config` with `RUST_LOG=filter`.
    pub fn start_with_log(config: &Path, filter: &str) -> Proc {
        Self::start_with_env(config, &[("RUST_LOG", filter)])
    }

    /// Runs the gateway on `config` with these environment variables.
    pub fn start_with_env(config: &Path, env: &[(&str, &str)]) -> Proc {
        let mut child = Command::new(BIN)
            .arg("--config")
            .arg(config)
            .env("RUST_LOG", "info")
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Proc {
            pid: child.id(),
            child: Some(child),
            lines,
            seen: Vec::new(),
        }
    }

    /// The next line containing `needle` (panics with what was seen after 20 s).
    pub fn wait_for(&mut self, needle: &str) -> String {
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if line.contains(needle) {
                        return line;
                    }
                }
                Err(_) => panic!("no line with {needle:?}; saw:\n{}", self.seen.join("\n")),
            }
        }
    }

    /// The addresses from the "wxgate started" line (plain or JSON).
    pub fn addresses(&mut self) -> (String, String) {
        let line = self.wait_for("wxgate started");
        if let Ok(json) = serde_json::from_str::<serde_json::Value>(&line) {
            let field = |name: &str| {
                json["fields"][name]
                    .as_str()
                    .unwrap_or_else(|| panic!("no {name} in {line}"))
                    .to_owned()
            };
            return (field("listen"), field("admin"));
        }
        let field = |name: &str| {
            line.split_whitespace()
                .find_map(|w| w.strip_prefix(&format!("{name}=")))
                .unwrap_or_else(|| panic!("no {name} in {line}"))
                .to_owned()
        };
        (field("listen"), field("admin"))
    }

    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.pid().to_string())
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Waits (on the process, not a timer) for the exit code; 20 s at most.
    pub fn wait_exit(&mut self) -> i32 {
        let mut child = self.child.take().expect("waited once");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(child.wait().map(|s| s.code()));
        });
        match rx.recv_timeout(Duration::from_secs(20)) {
            Ok(Ok(Some(code))) => code,
            other => panic!("did not exit cleanly: {other:?}"),
        }
    }

    /// Waits for the process to end however it ends (killed by a signal,
    /// say); 20 s at most.
    pub fn wait_exit_any(&mut self) {
        let mut child = self.child.take().expect("waited once");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(child.wait());
        });
        assert!(
            matches!(rx.recv_timeout(Duration::from_secs(20)), Ok(Ok(_))),
            "did not exit"
        );
    }

    /// Stops the process with SIGTERM and returns every line it wrote.
    pub fn stop(mut self) -> Vec<String> {
        self.signal("TERM");
        assert_eq!(self.wait_exit(), 0, "{}", self.seen.join("\n"));
        // The reader thread ends with stderr; take what is left.
        while let Ok(line) = self.lines.recv_timeout(Duration::from_secs(5)) {
            self.seen.push(line);
        }
        std::mem::take(&mut self.seen)
    }

    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| c.try_wait().unwrap().is_none())
    }

    pub fn pid(&self) -> u32 {
        self.pid
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Some(child) = &mut self.child {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Whether a plain log line writes a field as `key="value"` (a bare `&str`
/// field) rather than `key=value` (tracing's `%`), the one way wxgate uses.
pub fn has_quoted_field(line: &str) -> bool {
    line.match_indices("=\"").any(|(at, _)| {
        line[..at]
            .bytes()
            .last()
            .is_some_and(|b| b.is_ascii_alphanumeric() || b == b'_')
    })
}

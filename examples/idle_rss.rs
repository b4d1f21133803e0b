//! Measures what idle client connections cost a release build of wxgate:
//! starts `target/release/wxgate` on a free port, opens N connections that
//! each send one request and then sit idle in keep-alive (the realistic
//! idle client), and reads the gateway's VmRSS and VmHWM from /proc.
//!
//! ```sh
//! cargo build --release --bin wxgate
//! ulimit -n 30000            # both processes need N descriptors
//! cargo run --release --example idle_rss -- 10000
//! ```
//!
//! Linux only (reads /proc). The gateway is killed at the end.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn main() {
    let mut args = std::env::args().skip(1);
    let count: usize = args.next().map_or(10_000, |n| n.parse().expect("a count"));
    let binary = args
        .next()
        .unwrap_or_else(|| "target/release/wxgate".to_owned());

    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let config = std::env::temp_dir().join(format!("wxgate-idle-rss-{port}.toml"));
    std::fs::write(
        &config,
        format!(
            r#"
[server]
listen = "127.0.0.1:{port}"
header_timeout = "10m"
idle_timeout = "10m"
max_connections = {max}

[[apps]]
appid = "wxidle0000000001"
secret = "unused"

[auth]
login_rate_limit = "off"

[token]
[[token.keys]]
id = "k1"
secret = "idle-rss-measurement-key-0123456789abcdef"

[[routes]]
path = "/api"
upstream = "http://127.0.0.1:9"
auth = "required"

[log]
level = "warn"
"#,
            max = count + 100
        ),
    )
    .expect("write the config");

    let mut child = Command::new(&binary)
        .arg("--config")
        .arg(&config)
        .stdout(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("start {binary}: {e}"));
    let addr = format!("127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(&addr).is_err() {
        assert!(Instant::now() < deadline, "the gateway did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    // One request first, so the baseline includes what the first request
    // allocates once (runtime, buffers, caches).
    drop(open_idle(&addr));
    let (base_rss, _) = memory(&child);

    let started = Instant::now();
    let mut idle = Vec::with_capacity(count);
    for i in 0..count {
        match open_idle(&addr) {
            Ok(stream) => idle.push(stream),
            Err(e) => {
                stop(&mut child);
                panic!("connection {i}: {e} (raise `ulimit -n`)");
            }
        }
    }
    let opened = started.elapsed();
    let (rss, hwm) = memory(&child);
    println!("idle keep-alive connections: {count} (opened in {opened:.1?})");
    println!("gateway VmRSS before: {} KiB", base_rss);
    println!("gateway VmRSS with them open: {rss} KiB");
    println!("gateway VmHWM (peak): {hwm} KiB");
    println!(
        "per connection: {:.1} KiB",
        (rss.saturating_sub(base_rss)) as f64 / count as f64
    );
    drop(idle);
    stop(&mut child);
    let _ = std::fs::remove_file(&config);
}

/// A connection that has sent one request, read its answer, and stays open.
fn open_idle(addr: &str) -> std::io::Result<TcpStream> {
    let mut stream = TcpStream::connect(addr)?;
    stream.write_all(b"GET /nothing-here HTTP/1.1\r\nHost: idle\r\n\r\n")?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut answer = Vec::new();
    let mut buf = [0u8; 1024];
    // A 404 with a JSON body and a Content-Length: read the head, then the
    // body it declares.
    loop {
        let n = stream.read(&mut buf)?;
        if n == 0 {
            return Err(std::io::Error::other("closed"));
        }
        answer.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&answer);
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let len = head
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length:")
                        .map(|v| v.trim().parse::<usize>().unwrap_or(0))
                })
                .unwrap_or(0);
            if body.len() >= len {
                return Ok(stream);
            }
        }
    }
}

/// (VmRSS, VmHWM) of the child, in KiB.
fn memory(child: &Child) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{}/status", child.id()))
        .expect("read /proc/PID/status");
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

fn stop(child: &mut Child) {
    let _ = child.kill();
    let _ = child.wait();
}

#!/usr/bin/env python3
"""What idle client connections cost each proxy, side by side, in one run.

    bench/idle_peers.py [N]        # N connections per phase (default 9000: HAProxy needs 2N+ descriptors under a 20000 limit)
    CONFIGS="B C D" GATEWAY_BIN=path/to/wxgate bench/idle_peers.py 10000

Slots as in run_peers.sh: B nginx (plain proxy), C HAProxy with HS256
jwt_verify, D the gateway (GATEWAY_BIN, default the repository's
target/release/wxgate: `cargo build --release` first; configured from
bench/wxgate-bench.toml.tmpl plus long idle limits). One upstream
nginx serves all of them.

For each proxy, two phases, each measured as the growth of the resident
memory (VmRSS summed over the proxy's processes) over its warmed-up value:
  fresh:  N connections opened that have sent nothing yet
  used:   N keep-alive connections that each made one authorized request
          and read the whole answer, then sit idle
Printed: MiB before, MiB after, KiB per connection, for each phase.

Needs nginx and haproxy (Debian's nginx-light, haproxy); raises its own
descriptor limit. Everything listens on 127.0.0.1 and is stopped at the end.
"""
import base64, hashlib, hmac, json, os, resource, signal, socket, subprocess
import sys, tempfile, time

HERE = os.path.dirname(os.path.abspath(__file__))
N = int(sys.argv[1]) if len(sys.argv) > 1 else 9000
CONFIGS = os.environ.get("CONFIGS", "B C D").split()
GATEWAY_BIN = os.environ.get("GATEWAY_BIN", os.path.join(os.path.dirname(HERE), "target", "release", "wxgate"))
SECRET = "bench-jwt-secret-0123456789abcdefghijklmnop"
NAMES = {"B": "nginx", "C": "haproxy+jwt", "D": "gateway"}


def free_port():
    s = socket.socket(); s.bind(("127.0.0.1", 0)); p = s.getsockname()[1]; s.close(); return p


def b64u(b):
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def token():
    h = b64u(json.dumps({"alg": "HS256", "typ": "JWT", "kid": "k1"}).encode())
    p = b64u(json.dumps({"iss": "wxgate", "sub": "oTestOpenId123", "aud": "wxbench000000000",
                         "iat": int(time.time()), "exp": 4102444800, "jti": "idle-0123456789"}).encode())
    s = b64u(hmac.new(SECRET.encode(), f"{h}.{p}".encode(), hashlib.sha256).digest())
    return f"{h}.{p}.{s}"


def tree(root):
    kids = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                s = open(f"/proc/{d}/stat").read()
                kids.setdefault(int(s[s.rindex(")") + 2:].split()[1]), []).append(int(d))
            except OSError:
                pass
    out, todo = [], [root]
    while todo:
        p = todo.pop(); out.append(p); todo.extend(kids.get(p, []))
    return out


def rss_kib(root):
    total = 0
    for p in tree(root):
        try:
            for line in open(f"/proc/{p}/status"):
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            pass
    return total


def wait_port(port, proc, t=10):
    end = time.time() + t
    while time.time() < end:
        if proc.poll() is not None:
            raise SystemExit(f"process exited early: {proc.args}")
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close(); return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"port {port} never opened")


def request(sock, port, tok):
    auth = f"Authorization: Bearer {tok}\r\n" if tok else ""
    sock.sendall(f"GET /idle HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n{auth}\r\n".encode())
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = sock.recv(65536)
        if not chunk:
            raise RuntimeError("closed before the answer")
        buf += chunk
    head, body = buf.split(b"\r\n\r\n", 1)
    status = int(head.split(b" ", 2)[1])
    length = 0
    for line in head.split(b"\r\n")[1:]:
        k, _, v = line.partition(b":")
        if k.strip().lower() == b"content-length":
            length = int(v)
    while len(body) < length:
        body += sock.recv(65536)
    return status


def phase(port, pid, used, tok):
    base = rss_kib(pid)
    socks = []
    try:
        for _ in range(N):
            s = socket.create_connection(("127.0.0.1", port))
            if used:
                st = request(s, port, tok)
                if st != 200:
                    raise RuntimeError(f"status {st}")
            socks.append(s)
        time.sleep(1.0)  # let the proxy accept and settle; memory is read, not timed
        after = rss_kib(pid)
    finally:
        for s in socks:
            s.close()
    time.sleep(1.0)
    return base, after


def main():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = max(5 * N + 1000, soft)
    try:  # root may raise the hard limit too
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, max(want, hard)))
    except (ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(want, hard), hard))
    tmp = tempfile.mkdtemp(prefix="idle-peers.")
    procs = []

    def start(cmd, **kw):
        p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=open(f"{tmp}/{len(procs)}.log", "w"),
                             start_new_session=True, **kw)
        procs.append(p); return p

    try:
        up = free_port()
        os.makedirs(f"{tmp}/up/logs")
        open(f"{tmp}/up/nginx.conf", "w").write(f"""
worker_processes 1; daemon off; pid {tmp}/up/nginx.pid; error_log {tmp}/up/error.log;
events {{ worker_connections 4096; }}
http {{ access_log off; keepalive_timeout 300s; keepalive_requests 1000000;
  server {{ listen 127.0.0.1:{up}; location / {{ return 200 '{{"ok":true}}'; }} }} }}
""")
        u = start(["nginx", "-p", f"{tmp}/up", "-e", f"{tmp}/up/error.log", "-c", f"{tmp}/up/nginx.conf"])
        wait_port(up, u)
        tok = token()
        rows = []
        for cfg in CONFIGS:
            port = free_port()
            if cfg == "B":
                os.makedirs(f"{tmp}/b/logs", exist_ok=True)
                open(f"{tmp}/b/nginx.conf", "w").write(f"""
worker_processes 1; daemon off; pid {tmp}/b/nginx.pid; error_log {tmp}/b/error.log;
worker_rlimit_nofile {4 * N + 1000};
events {{ worker_connections {2 * N + 1000}; }}
http {{ access_log off; keepalive_timeout 300s; client_header_timeout 300s;
  upstream up {{ server 127.0.0.1:{up}; keepalive 256; }}
  server {{ listen 127.0.0.1:{port} backlog=4096; location / {{ proxy_http_version 1.1;
    proxy_set_header Connection ""; proxy_pass http://up; }} }} }}
""")
                p = start(["nginx", "-p", f"{tmp}/b", "-e", f"{tmp}/b/error.log", "-c", f"{tmp}/b/nginx.conf"])
            elif cfg == "C":
                open(f"{tmp}/c.cfg", "w").write(f"""
global
    nbthread 1
    maxconn {N + 100}
defaults
    mode http
    timeout connect 5s
    timeout client 300s
    timeout server 60s
    timeout http-keep-alive 300s
    timeout http-request 300s
frontend fe
    bind 127.0.0.1:{port}
    http-request set-var(txn.bearer) http_auth_bearer
    http-request deny deny_status 401 unless {{ var(txn.bearer),jwt_header_query('$.alg') -m str HS256 }}
    http-request deny deny_status 401 unless {{ var(txn.bearer),jwt_verify("HS256","{SECRET}") -m int 1 }}
    http-request set-var(txn.sub) var(txn.bearer),jwt_payload_query('$.sub')
    http-request del-header X-WX- -m beg
    http-request set-header X-WX-OpenID %[var(txn.sub)]
    default_backend be
backend be
    http-reuse always
    server up1 127.0.0.1:{up}
""")
                p = start(["haproxy", "-f", f"{tmp}/c.cfg"])
            else:
                tmpl = open(os.path.join(HERE, "wxgate-bench.toml.tmpl")).read()
                conf = (tmpl.replace("@LISTEN@", f"127.0.0.1:{port}").replace("@JWT_SECRET@", SECRET)
                        .replace("@UPSTREAM_URL@", f"http://127.0.0.1:{up}"))
                conf = conf.replace("[server]\n", f"[server]\nheader_timeout = \"300s\"\nidle_timeout = \"300s\"\n"
                                    f"max_connections = {2 * N + 1000}\n", 1)
                open(f"{tmp}/d.toml", "w").write(conf)
                p = start([GATEWAY_BIN, "--config", f"{tmp}/d.toml"], env=dict(os.environ, RUST_LOG="warn"))
            wait_port(port, p)
            warm = socket.create_connection(("127.0.0.1", port))
            for _ in range(50):
                assert request(warm, port, tok) == 200, f"{NAMES[cfg]}: warm-up request refused"
            warm.close()
            time.sleep(0.5)
            f0, f1 = phase(port, p.pid, False, tok)
            u0, u1 = phase(port, p.pid, True, tok)
            rows.append((cfg, f0, f1, u0, u1))
            os.killpg(p.pid, signal.SIGTERM); p.wait(10)
        print(f"idle connections: N={N} per phase; resident memory (VmRSS, whole process tree)")
        print("| config | fresh: MiB before -> after | KiB/conn | used: MiB before -> after | KiB/conn |")
        print("|---|---|---|---|---|")
        for cfg, f0, f1, u0, u1 in rows:
            print(f"| {cfg} {NAMES[cfg]} | {f0/1024:.1f} -> {f1/1024:.1f} | {(f1-f0)/N:.2f} "
                  f"| {u0/1024:.1f} -> {u1/1024:.1f} | {(u1-u0)/N:.2f} |")
    finally:
        for p in procs:
            if p.poll() is None:
                try:
                    os.killpg(p.pid, signal.SIGTERM); p.wait(10)
                except Exception:
                    pass


if __name__ == "__main__":
    main()

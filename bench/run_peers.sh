#!/usr/bin/env bash
# run_peers.sh - side-by-side, interleaved benchmark of an authenticating
# reverse proxy against its peers, on one box, with one upstream and one load
# generator:
#
#   A  direct   : wrk -> upstream                       (one hop less: the limit)
#   B  nginx    : wrk -> nginx (plain proxy, no auth) -> upstream
#   C  haproxy  : wrk -> HAProxy (HS256 jwt_verify, 401 on failure,
#                 X-WX-OpenID from `sub`)               -> upstream
#   D  gateway  : wrk -> $GATEWAY_CMD listening on 127.0.0.1:$GATEWAY_PORT -> upstream
#                 (skipped when GATEWAY_CMD is unset; bench/wxgate.sh builds
#                 wxgate and runs this script with wxgate in slot D)
#
# Every trial sends the same request (GET with `Authorization: Bearer <JWT>`).
# Before any timing, each configuration is checked for correctness; a config
# that fails its checks is not timed (and the script exits non-zero).
# Trials are interleaved: round 1 = A B C D, round 2 = B C D A, ... (ROTATE=1),
# and ratios between configs are computed per round (paired), then medianed.
#
# Per trial it records: wrk requests/s, latency p50/p90/p99 (wrk --latency
# histogram), the proxy's CPU time (utime+stime of its whole process tree from
# /proc/PID/stat, before/after) divided by the request count, the upstream's
# CPU per request, the proxy's peak RSS (sum of VmHWM over its process tree),
# and box-wide busy/steal percentages from /proc/stat (noise indicator).
#
# All knobs are environment variables; see bench/README.md or
# `bench/run_peers.sh --help`. Paths in them are relative to the directory
# it is run from (the repository root in the examples).
# Only 127.0.0.1 is used. All processes started here are stopped on exit.

set -uo pipefail

if [[ "${1:-}" == "-h" || "${1:-}" == "--help" ]]; then
  sed -n '2,/^$/p' "$0" | sed 's/^# \{0,1\}//'
  cat <<'EOF'
Environment (defaults in brackets):
  DURATION=4          seconds per timed trial
  ROUNDS=4            interleaved rounds
  WARMUP=1            seconds of untimed warm-up per config and mode (0 = none)
  SETTLE=0.5          idle seconds between trials
  CONNS=64            wrk connections
  MODES="keepalive close"   keepalive | close (Connection: close per request)
                      | reject (bad-signature token, only C and D, expects 401)
                      | instr (after the timed modes: syscalls/req via strace -c and
                        user-space instructions/req via valgrind/callgrind; ~15 s/config)
  INSTR_DURATION=3    seconds of load for each instr measurement
  CONFIGS="A B C D"   subset to run (D only if GATEWAY_CMD is set)
  ROTATE=1            rotate the start of the order every round (A B C D, B C D A, ...)
                      so no config always runs first/last; 0 = always A B C D
  PIN=split           split: proxy on PROXY_CPUS, wrk+upstream on LOAD_CPUS
                      none : no taskset at all
  LOAD_CPUS=0  PROXY_CPUS=1  UPSTREAM_CPUS=$LOAD_CPUS
  WRK_THREADS         [#CPUs in LOAD_CPUS, or nproc when PIN=none]
  PROXY_WORKERS       [#CPUs in PROXY_CPUS, or nproc]: nginx worker_processes,
                      haproxy nbthread; exported as BENCH_PROXY_WORKERS
  UPSTREAM_WORKERS=1  upstream nginx worker_processes
  BASE_PORT=18080     upstream=BASE+1, nginx=BASE+2, haproxy=BASE+3
  GATEWAY_CMD         command line of the gateway (run via `sh -c "exec ..."`)
  GATEWAY_PORT        [BASE+4] port the gateway listens on (127.0.0.1)
  GATEWAY_CONFIG_TEMPLATE  optional file; @LISTEN@ @LISTEN_PORT@ @UPSTREAM_URL@
                      @UPSTREAM_ADDR@ @JWT_SECRET@ @WORKERS@ @TMP@ are substituted,
                      result written to $GATEWAY_CONFIG (exported)
  GATEWAY_STARTUP_TIMEOUT=30  seconds to wait for the gateway port
  JWT_SECRET          HS256 secret [bench-secret-...]; exported as BENCH_JWT_SECRET
  HAPROXY_REUSE=always  http-reuse mode of config C's backend (HAProxy default: safe)
  HAPROXY_EXTRA       extra lines appended to config C's frontend
  RESULTS_CSV         copy the per-trial CSV here as well
  KEEP_TMP=0          1 = keep the temp dir (configs, logs, raw wrk output)
  NO_INSTALL=0        1 = never call apt-get
EOF
  exit 0
fi

# ------------------------------------------------------------------ settings
DURATION=${DURATION:-4}
ROUNDS=${ROUNDS:-4}
WARMUP=${WARMUP:-1}
SETTLE=${SETTLE:-0.5}
CONNS=${CONNS:-64}
MODES=${MODES:-"keepalive close"}
CONFIGS=${CONFIGS:-"A B C D"}
ROTATE=${ROTATE:-1}
PIN=${PIN:-split}
LOAD_CPUS=${LOAD_CPUS:-0}
PROXY_CPUS=${PROXY_CPUS:-1}
UPSTREAM_CPUS=${UPSTREAM_CPUS:-$LOAD_CPUS}
UPSTREAM_WORKERS=${UPSTREAM_WORKERS:-1}
BASE_PORT=${BASE_PORT:-18080}
UP_PORT=$((BASE_PORT + 1))
NGINX_PORT=$((BASE_PORT + 2))
HAPROXY_PORT=$((BASE_PORT + 3))
GATEWAY_PORT=${GATEWAY_PORT:-$((BASE_PORT + 4))}
GATEWAY_CMD=${GATEWAY_CMD:-}
GATEWAY_CONFIG_TEMPLATE=${GATEWAY_CONFIG_TEMPLATE:-}
GATEWAY_STARTUP_TIMEOUT=${GATEWAY_STARTUP_TIMEOUT:-30}
JWT_SECRET=${JWT_SECRET:-bench-secret-4f1c2a9e7b3d5f60a8c1e2b3d4f5a6b7}
JWT_SUB=oTestOpenId123
JWT_ISS=${JWT_ISS:-wxgate}
JWT_AUD=${JWT_AUD:-wxbench000000000}
JWT_KID=${JWT_KID:-k1}
export JWT_ISS JWT_AUD JWT_KID
KEEP_TMP=${KEEP_TMP:-0}
NO_INSTALL=${NO_INSTALL:-0}
RESULTS_CSV=${RESULTS_CSV:-}
REQ_PATH=/api/v1/ping

log()  { printf '[%(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
die()  { log "FATAL: $*"; exit 2; }

[[ "$JWT_SECRET" =~ ^[A-Za-z0-9._~-]+$ ]] || die "JWT_SECRET must match [A-Za-z0-9._~-]+ (it is pasted into configs)"
for m in $MODES; do [[ $m =~ ^(keepalive|close|reject|instr)$ ]] || die "unknown mode '$m' in MODES"; done
for c in $CONFIGS; do [[ $c =~ ^[ABCD]$ ]] || die "unknown config '$c' in CONFIGS"; done
[[ "$DURATION$WARMUP$ROUNDS$CONNS" =~ ^[0-9]+$ ]] || die "DURATION, WARMUP, ROUNDS, CONNS must be integers"

# ------------------------------------------------------------------ tools
need_pkgs=()
command -v nginx   >/dev/null || [[ -x /usr/sbin/nginx ]]   || need_pkgs+=(nginx-light)
command -v haproxy >/dev/null || [[ -x /usr/sbin/haproxy ]] || need_pkgs+=(haproxy)
command -v wrk     >/dev/null || need_pkgs+=(wrk)
command -v curl    >/dev/null || need_pkgs+=(curl)
command -v python3 >/dev/null || need_pkgs+=(python3)
command -v taskset >/dev/null || need_pkgs+=(util-linux)
command -v ss      >/dev/null || need_pkgs+=(iproute2)
if [[ " $MODES " == *" instr "* ]]; then
  command -v valgrind >/dev/null || need_pkgs+=(valgrind)
  command -v strace   >/dev/null || need_pkgs+=(strace)
fi
if ((${#need_pkgs[@]})); then
  [[ "$NO_INSTALL" == 1 ]] && die "missing packages: ${need_pkgs[*]} (NO_INSTALL=1)"
  log "installing: ${need_pkgs[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null && apt-get install -y -qq "${need_pkgs[@]}" >/dev/null \
    || die "apt-get install ${need_pkgs[*]} failed"
  # Debian's postinst may try to start the system services; we never use them.
fi
export PATH="$PATH:/usr/sbin:/sbin"
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
NGINX_BIN=$(command -v nginx); HAPROXY_BIN=$(command -v haproxy); WRK_BIN=$(command -v wrk)
# resolve the real interpreter once (a pyenv/asdf shim costs ~100 ms per call)
PY=$(python3 -c 'import sys; print(sys.executable)') || die "python3 does not run"

# ------------------------------------------------------------------ temp dir + cleanup
TMP=$(mktemp -d -t bench-peers.XXXXXX) || die "mktemp failed"
declare -a STARTED=()   # "name:pid"

# signal one process we started (and its process group, which setsid made
# ours), but only while it is still our child: never a recycled PID.
signal_ours() { # SIG pid
  local sig=$1 pid=$2 st
  st=$(sed 's/.*) //' "/proc/$pid/stat" 2>/dev/null) || return 1
  # shellcheck disable=SC2086  # word splitting intended
  set -- $st   # state ppid pgrp ...
  [[ "$2" == "$$" ]] || return 1
  if [[ "$3" == "$pid" ]]; then kill "-$sig" -- "-$pid" 2>/dev/null; else kill "-$sig" "$pid" 2>/dev/null; fi
}
cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  local i entry pid
  for ((i=${#STARTED[@]}-1; i>=0; i--)); do
    entry=${STARTED[$i]}; pid=${entry##*:}
    signal_ours TERM "$pid"
  done
  for entry in "${STARTED[@]}"; do
    pid=${entry##*:}
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    if signal_ours KILL "$pid"; then log "  ${entry%%:*} (pid $pid) ignored SIGTERM, sent SIGKILL"; fi
    wait "$pid" 2>/dev/null
  done
  if [[ "$KEEP_TMP" == 1 ]]; then log "temp dir kept: $TMP"; else rm -rf "$TMP"; fi
  exit "$rc"
}
trap cleanup EXIT
trap 'log "interrupted"; exit 130' INT TERM

# ------------------------------------------------------------------ python helper
cat >"$TMP/helper.py" <<'PYEOF'
import sys, os, json, hmac, hashlib, base64, time, statistics, csv

def b64u(b):
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()

def jwt(secret, header, payload, key_override=None):
    h = b64u(json.dumps(header, separators=(",", ":")).encode())
    p = b64u(json.dumps(payload, separators=(",", ":")).encode())
    key = (key_override if key_override is not None else secret).encode()
    sig = b64u(hmac.new(key, f"{h}.{p}".encode(), hashlib.sha256).digest())
    return f"{h}.{p}.{sig}"

def cmd_mint(secret, sub):
    now = int(time.time())
    hdr = {"alg": "HS256", "typ": "JWT", "kid": os.environ.get("JWT_KID", "k1")}
    good = {"iss": os.environ.get("JWT_ISS", "wxgate"), "sub": sub,
            "aud": os.environ.get("JWT_AUD", "wxbench000000000"),
            "iat": now, "exp": 4102444800,  # exp = 2100-01-01
            "jti": "bench-0123456789abcdef"}
    toks = {
        "VALID":   jwt(secret, hdr, good),
        "BADSIG":  jwt(secret, hdr, good, key_override=secret + "x"),
        "EXPIRED": jwt(secret, hdr, dict(good, iat=now - 7200, exp=now - 3600)),
        "NOSUB":   jwt(secret, hdr, {k: v for k, v in good.items() if k != "sub"}),
    }
    h = b64u(b'{"alg":"none","typ":"JWT"}'); p = b64u(json.dumps(good, separators=(",", ":")).encode())
    toks["ALGNONE"] = f"{h}.{p}."
    for k, v in toks.items():
        print(f"TOK_{k}={v}")

def ncpus(spec):
    n = 0
    for part in spec.split(","):
        if "-" in part:
            a, b = part.split("-"); n += int(b) - int(a) + 1
        elif part.strip():
            n += 1
    print(n)

def tree(root):
    kids = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                s = f.read()
        except OSError:
            continue
        ppid = int(s[s.rindex(")") + 2:].split()[1])
        kids.setdefault(ppid, []).append(int(d))
    out, todo = [], [root]
    while todo:
        p = todo.pop(); out.append(p); todo.extend(kids.get(p, []))
    return out

def cmd_sample(root):
    """print: <cpu ticks (utime+stime) of the whole tree> <sum VmHWM kB> <sum VmRSS kB> <#procs>"""
    ticks = hwm = rss = n = 0
    for p in tree(int(root)):
        try:
            with open(f"/proc/{p}/stat") as f:
                s = f.read()
            fields = s[s.rindex(")") + 2:].split()
            ticks += int(fields[11]) + int(fields[12])          # utime, stime
            with open(f"/proc/{p}/status") as f:
                for line in f:
                    if line.startswith("VmHWM:"): hwm += int(line.split()[1])
                    elif line.startswith("VmRSS:"): rss += int(line.split()[1])
            n += 1
        except (OSError, ValueError, IndexError):
            pass
    print(ticks, hwm, rss, n)

def cmd_procstat():
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    user, nice, system, idle, iowait, irq, softirq, steal = (v + [0] * 8)[:8]
    busy = user + nice + system + irq + softirq
    print(busy, steal, busy + steal + idle + iowait)

def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None

def fmt(x, spec):
    return "-" if x is None else format(x, spec)

def spread(xs):
    xs = [x for x in xs if x is not None]
    if len(xs) < 2 or not statistics.median(xs):
        return None
    return 100.0 * (max(xs) - min(xs)) / statistics.median(xs)

def cmd_report(csv_path, hwm_path):
    rows = list(csv.DictReader(open(csv_path)))
    hwm = {}
    if os.path.exists(hwm_path):
        for line in open(hwm_path):
            k, v = line.split()
            hwm[k] = int(v)
    names = {"A": "A direct", "B": "B nginx", "C": "C haproxy+jwt", "D": "D gateway"}
    num = lambda r, k: float(r[k]) if r[k] not in ("", "None") else None
    modes = []
    for r in rows:
        if r["mode"] not in modes: modes.append(r["mode"])
    print()
    print("Per-trial results (raw, in execution order):")
    print(f"{'mode':9} {'rnd':>3} {'cfg':14} {'req/s':>9} {'p50 ms':>7} {'p99 ms':>7} {'proxy us/req':>12} {'up us/req':>9} {'proxy util':>10} {'box busy%':>9} {'steal%':>6} {'errs':>5}")
    for r in rows:
        pc, pu = num(r, "proxy_cpu_us_per_req"), num(r, "proxy_util_pct")
        print(f"{r['mode']:9} {r['round']:>3} {names[r['cfg']]:14} {num(r, 'rps'):9.0f} {num(r, 'p50_us')/1000:7.3f} {num(r, 'p99_us')/1000:7.3f} "
              f"{fmt(pc, '12.2f'):>12} {num(r, 'up_cpu_us_per_req'):9.2f} {('-' if pu is None else f'{pu:.0f}%'):>10} "
              f"{num(r, 'box_busy_pct'):9.0f} {num(r, 'steal_pct'):6.1f} {int(r['bad']):5d}")

    def rng(xs, spec):
        xs = [x for x in xs if x is not None]
        if not xs: return "-"
        return f"{format(statistics.median(xs), spec)} [{format(min(xs), spec)}-{format(max(xs), spec)}]"
    pct = lambda x: "-" if x is None else f"{x:.0f}%"

    for mode in modes:
        mrows = [r for r in rows if r["mode"] == mode]
        cfgs = [c for c in "ABCD" if any(r["cfg"] == c for r in mrows)]
        cell = {(r["cfg"], r["round"]): r for r in mrows}
        rounds = sorted({r["round"] for r in mrows}, key=int)
        def paired(cfg, ref, key):
            out = []
            for rd in rounds:
                a, b = cell.get((cfg, rd)), cell.get((ref, rd))
                if a and b and num(a, key) is not None and num(b, key):
                    out.append(num(a, key) / num(b, key))
            return out
        print()
        print(f"Summary, mode={mode}: medians over {len(rounds)} rounds, [min-max]; spread = (max-min)/median.")
        print("Ratios are paired: computed within each round (trials seconds apart share host conditions), then median [min-max].")
        print("| config | proxy CPU us/req | spread | req/s | spread | p50 ms | p99 ms | proxy util | peak RSS MiB | upstream us/req | req/s vs A | req/s vs C | CPU/req vs C |")
        print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
        for cfg in cfgs:
            rs = [r for r in mrows if r["cfg"] == cfg]
            g = lambda k: [num(r, k) for r in rs]
            bad = sum(int(r["bad"]) for r in rs)
            note = f" (!{bad} errors)" if bad else ""
            mem = f"{hwm[cfg]/1024:.1f}" if cfg in hwm else "-"
            vsA = rng(paired(cfg, "A", "rps"), ".3f") if "A" in cfgs else "-"
            vsC = rng(paired(cfg, "C", "rps"), ".3f") if "C" in cfgs else "-"
            cpuC = rng(paired(cfg, "C", "proxy_cpu_us_per_req"), ".3f") if ("C" in cfgs and cfg != "A") else "-"
            print(f"| {names[cfg]}{note} | {rng(g('proxy_cpu_us_per_req'), '.1f')} | {pct(spread(g('proxy_cpu_us_per_req')))} | "
                  f"{rng(g('rps'), '.0f')} | {pct(spread(g('rps')))} | {med(g('p50_us'))/1000:.2f} | {med(g('p99_us'))/1000:.2f} | "
                  f"{pct(med(g('proxy_util_pct')))} | {mem} | {fmt(med(g('up_cpu_us_per_req')), '.1f')} | {vsA} | {vsC} | {cpuC} |")
    print()
    print("proxy CPU us/req = (utime+stime of the proxy's process tree during the trial) / completed requests")
    print("  (includes kernel time: loopback TCP work done in the proxy's context is charged to it).")
    print("proxy util = proxy CPU time / trial wall time (100% = one core): ~100% => the proxy was the bottleneck.")
    print("peak RSS = sum of VmHWM over the proxy's processes (nginx: master+workers), max over the run.")
    print("upstream us/req = upstream nginx CPU per request: sanity check that it does similar work behind each proxy;")
    print("  it rises when load is lower (less batching) and for A/close (the upstream then accepts a connection per request).")

def cmd_tree(root):
    print(" ".join(map(str, tree(int(root)))))

def cmd_strace_csv(cfg, nreq, path):
    """strace -c output -> CSV rows: total syscalls/request and a per-syscall breakdown"""
    nreq = max(int(nreq), 1); calls = {}
    for line in open(path):
        f = line.split()
        if len(f) >= 5 and f[0][0].isdigit() and not line.startswith("100.00") and f[-1] != "total":
            try: calls[f[-1]] = int(f[3])
            except ValueError: pass
    total = sum(calls.values())
    top = sorted(calls.items(), key=lambda kv: -kv[1])
    detail = " ".join(f"{k}={v/nreq:.2f}" for k, v in top if v / nreq >= 0.01)
    print(f"{cfg},syscalls,{nreq},{total/nreq:.2f},{detail}")

def cmd_instr_report(path):
    names = {"B": "B nginx", "C": "C haproxy+jwt", "D": "D gateway"}
    rows = list(csv.DictReader(open(path)))
    print()
    print("Deterministic work per request (MODES contains instr; keep-alive load; proxy slowed by strace/valgrind):")
    print("| config | user-space instructions/req (callgrind) | vs C | syscalls/req (strace -c) | breakdown per request |")
    print("|---|---|---|---|---|")
    get = lambda cfg, m: next((r for r in rows if r["cfg"] == cfg and r["metric"] == m), None)
    refi = get("C", "user_instructions"); refs = get("C", "syscalls")
    for cfg in "BCD":
        i, s = get(cfg, "user_instructions"), get(cfg, "syscalls")
        if not i and not s: continue
        vs = f"{float(i['per_request'])/float(refi['per_request']):.2f}" if (i and refi) else "-"
        ins = f"{int(float(i['per_request'])):,}" if i else "-"
        print(f"| {names[cfg]} | {ins} | {vs} | {s['per_request'] if s else '-'} | {s['detail'] if s else '-'} |")
    print("user-space instructions exclude the kernel; syscalls/req shows what the kernel is asked to do per request.")

if __name__ == "__main__":
    c, *a = sys.argv[1:]
    {"mint": lambda: cmd_mint(*a), "ncpus": lambda: ncpus(*a), "sample": lambda: cmd_sample(*a),
     "procstat": cmd_procstat, "report": lambda: cmd_report(*a), "tree": lambda: cmd_tree(*a),
     "strace_csv": lambda: cmd_strace_csv(*a), "instr_report": lambda: cmd_instr_report(*a)}[c]()
PYEOF
H() { "$PY" -S "$TMP/helper.py" "$@"; }

# wrk: one JSON line with exact numbers at the end (latency in microseconds).
cat >"$TMP/report.lua" <<'LUAEOF'
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "WRKJSON {\"requests\":%d,\"duration_us\":%d,\"bytes\":%d,\"connect\":%d,\"read\":%d,\"write\":%d,\"status\":%d,\"timeout\":%d,\"p50\":%d,\"p90\":%d,\"p99\":%d,\"p999\":%d,\"max\":%d,\"mean\":%.1f}\n",
    summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency:percentile(99.9),
    latency.max, latency.mean))
end
LUAEOF

# ------------------------------------------------------------------ CPU layout
NPROC=$(nproc)
case "$PIN" in
  split)
    (( NPROC >= 2 )) || die "PIN=split needs >= 2 CPUs"
    TS_LOAD=(taskset -c "$LOAD_CPUS"); TS_PROXY=(taskset -c "$PROXY_CPUS"); TS_UP=(taskset -c "$UPSTREAM_CPUS")
    WRK_THREADS=${WRK_THREADS:-$(H ncpus "$LOAD_CPUS")}
    PROXY_WORKERS=${PROXY_WORKERS:-$(H ncpus "$PROXY_CPUS")}
    ;;
  none)
    TS_LOAD=(); TS_PROXY=(); TS_UP=()
    WRK_THREADS=${WRK_THREADS:-$NPROC}
    PROXY_WORKERS=${PROXY_WORKERS:-$NPROC}
    ;;
  *) die "PIN must be split or none";;
esac
(( WRK_THREADS <= CONNS )) || WRK_THREADS=$CONNS

# ------------------------------------------------------------------ tokens
eval "$(H mint "$JWT_SECRET" "$JWT_SUB")"
export BENCH_JWT_SECRET=$JWT_SECRET BENCH_TOKEN=$TOK_VALID BENCH_TMP=$TMP
export BENCH_UPSTREAM_ADDR=127.0.0.1:$UP_PORT BENCH_UPSTREAM_URL=http://127.0.0.1:$UP_PORT
export BENCH_PROXY_WORKERS=$PROXY_WORKERS GATEWAY_PORT

# ------------------------------------------------------------------ configs
port_busy() { [[ -n "$(ss -Hltn "( sport = :$1 )" 2>/dev/null)" ]]; }
for p in $UP_PORT $NGINX_PORT $HAPROXY_PORT; do port_busy "$p" && die "port $p already in use (set BASE_PORT)"; done

# ~100-byte body
BODY='{"ok":true,"service":"bench-upstream","note":"static 200 body padded to about one hundred bytes"}'

mkdir -p "$TMP/upstream" "$TMP/nginx" "$TMP/haproxy" "$TMP/gateway"
nginx_common() { # $1 = dir
  cat <<EOF
daemon off;
master_process on;
pid $1/nginx.pid;
error_log $1/error.log warn;
worker_rlimit_nofile 16384;
EOF
}
nginx_http_common() { # $1 = dir
  cat <<EOF
    access_log off;
    server_tokens off;
    keepalive_timeout 120s;
    keepalive_requests 1000000;
    client_body_temp_path $1/cb; proxy_temp_path $1/px; fastcgi_temp_path $1/fc;
    uwsgi_temp_path $1/uw; scgi_temp_path $1/sc;
EOF
}

{ nginx_common "$TMP/upstream"; cat <<EOF
worker_processes $UPSTREAM_WORKERS;
events { worker_connections 4096; }
http {
$(nginx_http_common "$TMP/upstream")
    server {
        listen 127.0.0.1:$UP_PORT backlog=4096;
        location / {
            default_type application/json;
            # echo what the upstream received, so correctness can be checked
            add_header X-Echo-OpenID \$http_x_wx_openid always;
            add_header X-Echo-UnionID \$http_x_wx_unionid always;
            return 200 '$BODY';
        }
    }
}
EOF
} >"$TMP/upstream/nginx.conf"

{ nginx_common "$TMP/nginx"; cat <<EOF
worker_processes $PROXY_WORKERS;
events { worker_connections 4096; }
http {
$(nginx_http_common "$TMP/nginx")
    upstream up {
        server 127.0.0.1:$UP_PORT;
        keepalive 256;
        keepalive_requests 1000000;
        keepalive_timeout 120s;
    }
    server {
        listen 127.0.0.1:$NGINX_PORT backlog=4096;
        location / {
            proxy_pass http://up;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }
    }
}
EOF
} >"$TMP/nginx/nginx.conf"

cat >"$TMP/haproxy/haproxy.cfg" <<EOF
global
    nbthread $PROXY_WORKERS
    maxconn 4096

defaults
    mode http
    timeout connect 5s
    timeout client  60s
    timeout server  60s
    timeout http-keep-alive 120s

frontend fe_jwt
    bind 127.0.0.1:$HAPROXY_PORT
    # --- JWT (HS256) verification: same work as the gateway -----------------
    http-request set-var(txn.bearer) http_auth_bearer
    http-request deny deny_status 401 unless { var(txn.bearer),jwt_header_query('\$.alg') -m str HS256 }
    http-request deny deny_status 401 unless { var(txn.bearer),jwt_verify("HS256","$JWT_SECRET") -m int 1 }
    # (jwt_payload_query without arguments returns nothing on 2.6.12, so each
    #  claim is queried separately; this decodes the payload twice)
    http-request set-var(txn.exp) var(txn.bearer),jwt_payload_query('\$.exp','int')
    http-request set-var(txn.now) date
    http-request deny deny_status 401 unless { var(txn.exp) -m found }
    http-request deny deny_status 401 if { var(txn.exp),sub(txn.now) -m int le 0 }
    http-request set-var(txn.sub) var(txn.bearer),jwt_payload_query('\$.sub')
    http-request deny deny_status 401 unless { var(txn.sub) -m found }
    # --- strip client-supplied identity headers, inject the verified one ----
    http-request del-header X-WX- -m beg
    http-request set-header X-WX-OpenID %[var(txn.sub)]
${HAPROXY_EXTRA:-}
    default_backend be_up

backend be_up
    # reuse idle upstream connections even for the first request of a client
    # connection (default "safe" opens a new upstream connection for it, which
    # makes Connection: close clients cost an upstream connect each). nginx's
    # "upstream keepalive" and a pooled hyper client behave like "always".
    http-reuse ${HAPROXY_REUSE:-always}
    server up1 127.0.0.1:$UP_PORT
EOF

GATEWAY_CONFIG=""
if [[ -n "$GATEWAY_CONFIG_TEMPLATE" ]]; then
  [[ -r "$GATEWAY_CONFIG_TEMPLATE" ]] || die "GATEWAY_CONFIG_TEMPLATE not readable: $GATEWAY_CONFIG_TEMPLATE"
  GATEWAY_CONFIG="$TMP/gateway/$(basename "$GATEWAY_CONFIG_TEMPLATE")"
  sed -e "s|@LISTEN@|127.0.0.1:$GATEWAY_PORT|g" -e "s|@LISTEN_PORT@|$GATEWAY_PORT|g" \
      -e "s|@UPSTREAM_URL@|$BENCH_UPSTREAM_URL|g" -e "s|@UPSTREAM_ADDR@|$BENCH_UPSTREAM_ADDR|g" \
      -e "s|@JWT_SECRET@|$JWT_SECRET|g" -e "s|@WORKERS@|$PROXY_WORKERS|g" -e "s|@TMP@|$TMP|g" \
      "$GATEWAY_CONFIG_TEMPLATE" >"$GATEWAY_CONFIG"
fi
export GATEWAY_CONFIG

"$NGINX_BIN" -t -q -p "$TMP/upstream" -e "$TMP/upstream/error.log" -c "$TMP/upstream/nginx.conf" || die "upstream nginx config invalid"
"$NGINX_BIN" -t -q -p "$TMP/nginx" -e "$TMP/nginx/error.log" -c "$TMP/nginx/nginx.conf" || die "proxy nginx config invalid"
"$HAPROXY_BIN" -c -q -f "$TMP/haproxy/haproxy.cfg" || die "haproxy config invalid"

# ------------------------------------------------------------------ start processes
declare -A PID=() PORT=() NAME=([A]="direct" [B]="nginx" [C]="haproxy+jwt" [D]="gateway")
PORT[A]=$UP_PORT; PORT[B]=$NGINX_PORT; PORT[C]=$HAPROXY_PORT; PORT[D]=$GATEWAY_PORT

start_bg() { # name logfile cmd...   -> sets LAST_PID
  local name=$1 logf=$2; shift 2
  setsid "$@" >"$logf" 2>&1 </dev/null &
  LAST_PID=$!
  STARTED+=("$name:$LAST_PID")
}
wait_port() { # port timeout_s pid
  local port=$1 t=$2 pid=$3 i
  for ((i = 0; i < t * 10; i++)); do
    kill -0 "$pid" 2>/dev/null || return 1
    (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && return 0
    sleep 0.1
  done
  return 1
}

log "starting upstream nginx on :$UP_PORT (cpus: ${UPSTREAM_CPUS:-any}, workers $UPSTREAM_WORKERS)"
start_bg upstream "$TMP/upstream/stdout.log" ${TS_UP[@]+"${TS_UP[@]}"} "$NGINX_BIN" -p "$TMP/upstream" -e "$TMP/upstream/error.log" -c "$TMP/upstream/nginx.conf"
UP_PID=$LAST_PID
wait_port "$UP_PORT" 10 "$UP_PID" || { cat "$TMP/upstream/"*.log >&2; die "upstream did not start"; }

ACTIVE=()
want() { [[ " $CONFIGS " == *" $1 "* ]]; }
want A && { PID[A]=""; ACTIVE+=(A); }
if want B; then
  log "starting nginx proxy on :$NGINX_PORT (workers $PROXY_WORKERS)"
  start_bg nginx "$TMP/nginx/stdout.log" ${TS_PROXY[@]+"${TS_PROXY[@]}"} "$NGINX_BIN" -p "$TMP/nginx" -e "$TMP/nginx/error.log" -c "$TMP/nginx/nginx.conf"
  PID[B]=$LAST_PID
  wait_port "$NGINX_PORT" 10 "${PID[B]}" || { cat "$TMP/nginx/"*.log >&2; die "nginx proxy did not start"; }
  ACTIVE+=(B)
fi
if want C; then
  log "starting haproxy on :$HAPROXY_PORT (nbthread $PROXY_WORKERS)"
  start_bg haproxy "$TMP/haproxy/stdout.log" ${TS_PROXY[@]+"${TS_PROXY[@]}"} "$HAPROXY_BIN" -db -f "$TMP/haproxy/haproxy.cfg"
  PID[C]=$LAST_PID
  wait_port "$HAPROXY_PORT" 10 "${PID[C]}" || { cat "$TMP/haproxy/stdout.log" >&2; die "haproxy did not start"; }
  ACTIVE+=(C)
fi
if want D; then
  if [[ -z "$GATEWAY_CMD" ]]; then
    log "D (gateway) skipped: GATEWAY_CMD is not set"
  else
    port_busy "$GATEWAY_PORT" && die "GATEWAY_PORT $GATEWAY_PORT already in use"
    log "starting gateway on :$GATEWAY_PORT: $GATEWAY_CMD"
    start_bg gateway "$TMP/gateway/stdout.log" ${TS_PROXY[@]+"${TS_PROXY[@]}"} sh -c "exec $GATEWAY_CMD"
    PID[D]=$LAST_PID
    if wait_port "$GATEWAY_PORT" "$GATEWAY_STARTUP_TIMEOUT" "${PID[D]}"; then
      ACTIVE+=(D)
    else
      log "gateway did not listen on :$GATEWAY_PORT within ${GATEWAY_STARTUP_TIMEOUT}s; its output:"
      tail -n 30 "$TMP/gateway/stdout.log" >&2
      die "gateway failed to start"
    fi
  fi
fi
((${#ACTIVE[@]})) || die "nothing to run"

# ------------------------------------------------------------------ correctness
FAILED=()
check() { # cfg label expect_code expect_openid(or -) expect_union_empty(1/0/-) curl-args...
  local cfg=$1 label=$2 want_code=$3 want_oid=$4 want_union=$5; shift 5
  local hdrs code oid union ok=1
  hdrs=$(curl -s -m 5 -o /dev/null -D - "$@" "http://127.0.0.1:${PORT[$cfg]}$REQ_PATH" | tr -d '\r')
  code=$(awk 'NR==1{print $2}' <<<"$hdrs")
  oid=$(awk -F': ' 'tolower($1)=="x-echo-openid"{print $2}' <<<"$hdrs")
  union=$(awk -F': ' 'tolower($1)=="x-echo-unionid"{print $2}' <<<"$hdrs")
  [[ "$code" == "$want_code" ]] || ok=0
  [[ "$want_oid" == "-" || "$oid" == "$want_oid" ]] || ok=0
  local unote=""
  if [[ "$want_union" == 1 && -n "$union" ]]; then
    if [[ "$cfg" == D ]]; then unote=" (WARN: X-WX-UnionID passed through)"; else ok=0; fi
  fi
  printf '  %-14s %-38s want %-3s got %-3s openid=%-16s %s%s\n' "${NAME[$cfg]}" "$label" "$want_code" "${code:-none}" "${oid:-<none>}" \
    "$([[ $ok == 1 ]] && echo ok || echo FAIL)" "$unote" >&2
  [[ $ok == 1 ]]
}
log "correctness checks"
RUN=()
for cfg in "${ACTIVE[@]}"; do
  good=1
  case $cfg in
    A|B)
      check "$cfg" "valid token -> 200" 200 - - -H "Authorization: Bearer $TOK_VALID" || good=0
      ;;
    C|D)
      check "$cfg" "valid token -> 200 + openid" 200 "$JWT_SUB" - -H "Authorization: Bearer $TOK_VALID" || good=0
      check "$cfg" "valid + spoofed X-WX-* -> overridden" 200 "$JWT_SUB" 1 -H "Authorization: Bearer $TOK_VALID" \
            -H "X-WX-OpenID: spoofed" -H "X-WX-UnionID: spoofed" || good=0
      check "$cfg" "bad signature -> 401" 401 "" - -H "Authorization: Bearer $TOK_BADSIG" || good=0
      check "$cfg" "no Authorization -> 401" 401 "" - || good=0
      check "$cfg" "expired -> 401" 401 "" - -H "Authorization: Bearer $TOK_EXPIRED" || good=0
      check "$cfg" "alg=none -> 401" 401 "" - -H "Authorization: Bearer $TOK_ALGNONE" || good=0
      check "$cfg" "no sub claim -> 401" 401 "" - -H "Authorization: Bearer $TOK_NOSUB" || good=0
      ;;
  esac
  if ((good)); then RUN+=("$cfg"); else FAILED+=("$cfg"); log "${NAME[$cfg]} FAILED correctness: it will not be timed"; fi
done
((${#RUN[@]})) || die "no configuration passed the correctness checks"

# ------------------------------------------------------------------ timing
CSV="$TMP/trials.csv"
echo "mode,round,cfg,rps,requests,duration_s,p50_us,p90_us,p99_us,p999_us,max_us,bad,proxy_cpu_us_per_req,up_cpu_us_per_req,proxy_util_pct,box_busy_pct,steal_pct" >"$CSV"
CLK_TCK=$(getconf CLK_TCK)

run_wrk() { # cfg mode duration outfile
  local cfg=$1 mode=$2 dur=$3 out=$4 tok=$TOK_VALID extra=()
  [[ $mode == close ]] && extra=(-H "Connection: close")
  [[ $mode == reject ]] && tok=$TOK_BADSIG
  timeout $((dur + 30)) ${TS_LOAD[@]+"${TS_LOAD[@]}"} "$WRK_BIN" -t"$WRK_THREADS" -c"$CONNS" -d"${dur}s" --timeout 5s --latency \
    -s "$TMP/report.lua" -H "Authorization: Bearer $tok" ${extra[@]+"${extra[@]}"} \
    "http://127.0.0.1:${PORT[$cfg]}$REQ_PATH" >"$out" 2>&1
}

trial() { # mode round cfg
  local mode=$1 rnd=$2 cfg=$3 out="$TMP/wrk-$1-$2-$3.txt"
  local p_before=(0 0 0 0) p_after=(0 0 0 0) u_before u_after s_before s_after
  [[ -n "${PID[$cfg]}" ]] && read -r -a p_before < <(H sample "${PID[$cfg]}")
  read -r -a u_before < <(H sample "$UP_PID")
  read -r -a s_before < <(H procstat)
  run_wrk "$cfg" "$mode" "$DURATION" "$out"
  read -r -a s_after < <(H procstat)
  read -r -a u_after < <(H sample "$UP_PID")
  [[ -n "${PID[$cfg]}" ]] && read -r -a p_after < <(H sample "${PID[$cfg]}")
  local json; json=$(grep -m1 '^WRKJSON ' "$out" | cut -d' ' -f2-)
  if [[ -z "$json" ]]; then log "wrk produced no result for $cfg/$mode (see $out)"; tail -5 "$out" >&2; return 1; fi
  [[ -n "${PID[$cfg]}" ]] && echo "$cfg ${p_after[1]}" >>"$TMP/hwm.txt"
  "$PY" -S - "$json" "$mode" "$rnd" "$cfg" "$CLK_TCK" "${PID[$cfg]:-none}" \
      "${p_before[0]}" "${p_after[0]}" "${u_before[0]}" "${u_after[0]}" \
      "${s_before[*]}" "${s_after[*]}" >>"$CSV" <<'PYEOF'
import json, sys
j = json.loads(sys.argv[1]); mode, rnd, cfg, tck, pid = sys.argv[2:7]
pb, pa, ub, ua = map(int, sys.argv[7:11])
sb = list(map(int, sys.argv[11].split())); sa = list(map(int, sys.argv[12].split()))
tck = int(tck); n = max(j["requests"], 1); dur = j["duration_us"] / 1e6
expect_status = (mode == "reject")
bad = j["connect"] + j["read"] + j["write"] + j["timeout"] + (0 if expect_status else j["status"])
if expect_status: bad += j["requests"] - j["status"]
proxy = "" if pid == "none" else (pa - pb) / tck * 1e6 / n
util = "" if pid == "none" else 100.0 * (pa - pb) / tck / dur
up = (ua - ub) / tck * 1e6 / n
dt = max(sa[2] - sb[2], 1)
busy = 100.0 * (sa[0] - sb[0]) / dt; steal = 100.0 * (sa[1] - sb[1]) / dt
r = lambda x, d: "" if x == "" else round(x, d)
print(",".join(map(str, [mode, rnd, cfg, round(j["requests"] / dur, 1), j["requests"], round(dur, 3),
      j["p50"], j["p90"], j["p99"], j["p999"], j["max"], bad, r(proxy, 3), round(up, 3), r(util, 1),
      round(busy, 1), round(steal, 2)])))
PYEOF
  tail -n1 "$CSV" | awk -F, -v n="${NAME[$cfg]}" '{printf "  %-8s r%s %-12s %9.0f req/s  p50 %6.3f ms  p99 %7.3f ms  proxy %s us/req  util %s%%  errs %s  box %s%% steal %s%%\n", $1, $2, n, $4, $7/1000, $9/1000, ($13==""?"-":$13), ($15==""?"-":$15), $12, $16, $17}' >&2
}

log "layout: PIN=$PIN load(wrk -t$WRK_THREADS -c$CONNS)=${TS_LOAD[*]:-any} upstream=${TS_UP[*]:-any} proxy=${TS_PROXY[*]:-any} workers=$PROXY_WORKERS"
log "plan: modes=[$MODES] configs=[${RUN[*]}] rounds=$ROUNDS duration=${DURATION}s warmup=${WARMUP}s"
for mode in $MODES; do
  [[ $mode == instr ]] && continue
  cfgs=()
  for cfg in "${RUN[@]}"; do
    [[ $mode == reject && ( $cfg == A || $cfg == B ) ]] && continue
    cfgs+=("$cfg")
  done
  ((${#cfgs[@]})) || continue
  if ((WARMUP > 0)); then
    log "[$mode] warm-up ${WARMUP}s each: ${cfgs[*]}"
    for cfg in "${cfgs[@]}"; do run_wrk "$cfg" "$mode" "$WARMUP" "$TMP/warmup-$mode-$cfg.txt"; done
    sleep "$SETTLE"
  fi
  for ((rnd = 1; rnd <= ROUNDS; rnd++)); do
    order=("${cfgs[@]}")
    if [[ $ROTATE == 1 ]]; then
      k=$(( (rnd - 1) % ${#cfgs[@]} )); order=("${cfgs[@]:k}" "${cfgs[@]:0:k}")
    fi
    for cfg in "${order[@]}"; do
      trial "$mode" "$rnd" "$cfg"
      sleep "$SETTLE"
    done
  done
done

# ------------------------------------------------------------------ peak RSS (before any restart)
for cfg in "${RUN[@]}"; do
  [[ -n "${PID[$cfg]}" ]] && echo "$cfg $(H sample "${PID[$cfg]}" | cut -d' ' -f2)" >>"$TMP/hwm.txt"
done
# keep the max VmHWM per config
sort -k1,1 -k2,2nr "$TMP/hwm.txt" 2>/dev/null | awk '!seen[$1]++' >"$TMP/hwm.max"

# ------------------------------------------------------------------ instr mode (opt-in)
# Deterministic per-request work, immune to the host noise that affects CPU time:
#  1. syscalls/request: strace -c -f attached to the live proxy during a wrk run
#  2. user-space instructions/request: the proxy restarted under valgrind/callgrind
#     (counters zeroed after a warm-up, dumped after the measured wrk run).
# Both slow the proxy down a lot (so batching per epoll_wait differs from the
# timed runs); read them as "work per request", not as a throughput figure.
INSTR_CSV="$TMP/instr.csv"
stop_one() { # pid: TERM it (and its process group), wait up to 10 s, then KILL
  local pid=$1
  signal_ours TERM "$pid" || return 0
  for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  signal_ours KILL "$pid"
  wait "$pid" 2>/dev/null
  return 0
}
wrk_requests() { grep -m1 '^WRKJSON ' "$1" | cut -d' ' -f2- | "$PY" -S -c 'import json,sys; j=json.load(sys.stdin); print(j["requests"], j["connect"]+j["read"]+j["write"]+j["timeout"]+j["status"])'; }

if [[ " $MODES " == *" instr "* ]]; then
  INSTR_DURATION=${INSTR_DURATION:-3}
  echo "cfg,metric,requests,per_request,detail" >"$INSTR_CSV"
  cp "$TMP/nginx/nginx.conf" "$TMP/nginx/nginx-instr.conf"
  sed -i 's/^master_process on;/master_process off;/' "$TMP/nginx/nginx-instr.conf"
  for cfg in "${RUN[@]}"; do
    [[ $cfg == A ]] && continue
    # ---- 1. syscalls per request (live proxy, unmodified)
    sargs=(); for p in $(H tree "${PID[$cfg]}"); do sargs+=(-p "$p"); done
    log "[instr] ${NAME[$cfg]}: strace -c on pids ${sargs[*]//-p /}"
    start_bg "strace-$cfg" "$TMP/strace-$cfg.log" ${TS_PROXY[@]+"${TS_PROXY[@]}"} strace -c -f -o "$TMP/strace-$cfg.txt" "${sargs[@]}"
    spid=$LAST_PID; sleep 1
    run_wrk "$cfg" keepalive "$INSTR_DURATION" "$TMP/wrk-strace-$cfg.txt"
    kill -INT "$spid" 2>/dev/null; wait "$spid" 2>/dev/null
    read -r nreq nbad < <(wrk_requests "$TMP/wrk-strace-$cfg.txt")
    H strace_csv "$cfg" "$nreq" "$TMP/strace-$cfg.txt" >>"$INSTR_CSV"
    # ---- 2. user-space instructions per request (restart under callgrind)
    stop_one "${PID[$cfg]}"
    vg=(valgrind --tool=callgrind --cache-sim=no --branch-sim=no --trace-children=yes
        "--callgrind-out-file=$TMP/cg-$cfg.%p")
    case $cfg in
      B) cmd=("$NGINX_BIN" -p "$TMP/nginx" -e "$TMP/nginx/error.log" -c "$TMP/nginx/nginx-instr.conf");;
      C) cmd=("$HAPROXY_BIN" -db -f "$TMP/haproxy/haproxy.cfg");;
      D) cmd=(sh -c "exec $GATEWAY_CMD");;
    esac
    log "[instr] ${NAME[$cfg]}: restarted under callgrind"
    start_bg "valgrind-$cfg" "$TMP/valgrind-$cfg.log" ${TS_PROXY[@]+"${TS_PROXY[@]}"} "${vg[@]}" "${cmd[@]}"
    vpid=$LAST_PID; PID[$cfg]=$vpid
    if ! wait_port "${PORT[$cfg]}" 120 "$vpid"; then
      log "[instr] ${NAME[$cfg]} did not start under valgrind"; tail -5 "$TMP/valgrind-$cfg.log" >&2; continue
    fi
    run_wrk "$cfg" keepalive 2 "$TMP/wrk-vg-warm-$cfg.txt"
    callgrind_control -z "$vpid" >/dev/null 2>&1 || log "[instr] callgrind_control -z failed"
    rm -f "$TMP"/cg-"$cfg".*.[0-9]*
    run_wrk "$cfg" keepalive "$INSTR_DURATION" "$TMP/wrk-vg-$cfg.txt"
    callgrind_control -d "$vpid" >/dev/null 2>&1 || log "[instr] callgrind_control -d failed"
    read -r nreq nbad < <(wrk_requests "$TMP/wrk-vg-$cfg.txt")
    dump=$(ls -t "$TMP"/cg-"$cfg".*.[0-9]* 2>/dev/null | head -1)
    ir=$(awk '/^totals:/{print $2; exit}' "$dump" 2>/dev/null)
    if [[ -n "$ir" && "$nreq" -gt 0 ]]; then
      echo "$cfg,user_instructions,$nreq,$(( (ir + nreq / 2) / nreq )),callgrind Ir total $ir (errors $nbad)" >>"$INSTR_CSV"
    else
      log "[instr] no callgrind dump for ${NAME[$cfg]}"
    fi
    stop_one "$vpid"
  done
fi

# ------------------------------------------------------------------ report

echo
echo "== run_peers.sh results $(date -u '+%Y-%m-%dT%H:%M:%SZ') =="
echo "host: $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //'), kernel $(uname -r)"
echo "versions: $("$NGINX_BIN" -v 2>&1 | sed 's/.*version: //'), $("$HAPROXY_BIN" -v | head -1 | awk '{print "haproxy/"$3}'), $("$WRK_BIN" -v 2>&1 | head -1 | awk '{print "wrk/"$2}')"
if [[ $PIN == split ]]; then cpus="wrk cpus=$LOAD_CPUS, upstream cpus=$UPSTREAM_CPUS, proxy cpus=$PROXY_CPUS"; else cpus="nothing pinned"; fi
echo "layout: PIN=$PIN ($cpus), proxy workers/threads=$PROXY_WORKERS, wrk -t$WRK_THREADS -c$CONNS, ${DURATION}s x $ROUNDS rounds (rotate=$ROTATE), warmup ${WARMUP}s"
[[ -n "$GATEWAY_CMD" ]] && echo "gateway: $GATEWAY_CMD (port $GATEWAY_PORT)"
((${#FAILED[@]})) && echo "FAILED correctness (not timed): ${FAILED[*]}"
H report "$CSV" "$TMP/hwm.max"
[[ -s "$INSTR_CSV" ]] && H instr_report "$INSTR_CSV"
if [[ -n "$RESULTS_CSV" ]]; then cp "$CSV" "$RESULTS_CSV" && echo "per-trial CSV: $RESULTS_CSV"; fi
((${#FAILED[@]})) && exit 1
exit 0

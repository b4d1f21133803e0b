#!/usr/bin/env bash
# Proxied keep-alive requests with the memory store and with the Redis
# store, in one run, interleaved: wxgate's CPU per request and requests/s
# for each. The hot path never waits on Redis; this shows it costs the same.
#
#   bench/store_keepalive.sh [path/to/wxgate]   (default target/release/wxgate)
#
# Needs wrk, nginx (the upstream) and redis-server. Everything listens on
# 127.0.0.1; every process it starts is stopped on exit. Env: ROUNDS (3),
# SECONDS_PER_TRIAL (5), CONNECTIONS (16), REVOKED (200: logouts done on
# each gateway first, so the revocation check has entries to look through).
set -euo pipefail
cd "$(dirname "$0")/.."

BIN="${1:-target/release/wxgate}"
ROUNDS="${ROUNDS:-3}"
TRIAL="${SECONDS_PER_TRIAL:-5}"
CONNECTIONS="${CONNECTIONS:-16}"
REVOKED="${REVOKED:-200}"
for tool in wrk nginx redis-server curl python3; do
    command -v "$tool" >/dev/null || [ -x "/usr/sbin/$tool" ] || { echo "needs $tool" >&2; exit 1; }
done
NGINX="$(command -v nginx || echo /usr/sbin/nginx)"

dir="$(mktemp -d)"
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$dir"
}
trap cleanup EXIT INT TERM

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

up_port="$(free_port)"
cat >"$dir/nginx.conf" <<EOF
daemon off; master_process off; worker_processes 1; pid $dir/nginx.pid;
error_log $dir/nginx.err;
events { worker_connections 1024; }
http { access_log off;
  server { listen 127.0.0.1:$up_port;
    location / { return 200 '{"ok":true,"service":"bench-upstream"}'; } } }
EOF
"$NGINX" -p "$dir" -c "$dir/nginx.conf" & pids+=($!)

redis_port="$(free_port)"
redis-server --bind 127.0.0.1 --port "$redis_port" --save '' --appendonly no \
    --dir "$dir" --logfile "$dir/redis.log" & pids+=($!)

key="$(python3 -c 'import base64,os; print(base64.b64encode(os.urandom(32)).decode())')"
config() { # name port admin store
    cat >"$dir/$1.toml" <<EOF
[server]
listen = "127.0.0.1:$2"
[admin]
listen = "127.0.0.1:$3"
[wechat]
api_base = "http://127.0.0.1:9"
[[apps]]
appid = "wxbench000000000"
secret = "bench-app-secret"
[auth]
login_rate_limit = "off"
[token]
[[token.keys]]
id = "k1"
secret = "store-keepalive-bench-key-0123456789abcdef"
[log]
level = "warn"
access = false
[[routes]]
path = "/"
upstream = "http://127.0.0.1:$up_port"
auth = "required"
$4
EOF
}
mem_port="$(free_port)"; redis_gw_port="$(free_port)"
config memory "$mem_port" "$(free_port)" ""
config redis "$redis_gw_port" "$(free_port)" "[store]
backend = \"redis\"
url = \"redis://127.0.0.1:$redis_port/0\"
encryption_key = \"$key\""
"$BIN" --config "$dir/memory.toml" 2>"$dir/memory.log" & mem_pid=$!; pids+=($mem_pid)
"$BIN" --config "$dir/redis.toml" 2>"$dir/redis-gw.log" & redis_pid=$!; pids+=($redis_pid)

token() { "$BIN" --config "$dir/memory.toml" token --openid "$1" 2>/dev/null | tail -1; }
TOKEN="$(token oBench)"
for port in "$mem_port" "$redis_gw_port"; do
    for _ in $(seq 50); do
        [ "$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $TOKEN" "http://127.0.0.1:$port/x")" = 200 ] && break
        sleep 0.1
    done
done
for i in $(seq "$REVOKED"); do
    t="$(token "oRevoked$i")"
    for port in "$mem_port" "$redis_gw_port"; do
        code="$(curl -s -o /dev/null -w '%{http_code}' -X POST -H "Authorization: Bearer $t" "http://127.0.0.1:$port/auth/logout")"
        [ "$code" = 204 ] || { echo "logout on $port: $code" >&2; exit 1; }
    done
done

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
hz="$(getconf CLK_TCK)"
echo "store,round,requests_per_s,cpu_us_per_request"
for round in $(seq "$ROUNDS"); do
    for pair in "memory:$mem_port:$mem_pid" "redis:$redis_gw_port:$redis_pid"; do
        IFS=: read -r name port pid <<<"$pair"
        before="$(cpu_ticks "$pid")"
        out="$(wrk -t1 -c"$CONNECTIONS" -d"${TRIAL}s" -H "Authorization: Bearer $TOKEN" "http://127.0.0.1:$port/x")"
        after="$(cpu_ticks "$pid")"
        requests="$(awk '/requests in/ {print $1}' <<<"$out")"
        non2xx="$(awk '/Non-2xx/ {print $NF}' <<<"$out")"
        [ -z "$non2xx" ] || { echo "$name: $non2xx answers were not 2xx" >&2; exit 1; }
        python3 -c "print('$name,$round,%.0f,%.1f' % ($requests / $TRIAL, ($after - $before) / $hz * 1e6 / $requests))"
    done
done

#!/usr/bin/env bash
# bench/wxgate.sh - builds wxgate's release binary and runs bench/run_peers.sh
# with it in slot D, configured from bench/wxgate-bench.toml.tmpl, with the
# access log filtered out (RUST_LOG=warn: the peers log nothing per request
# either). Run it from anywhere; every run_peers.sh knob passes through:
#
#   bench/wxgate.sh                         # keep-alive + close, 4 rounds, ~3 min
#   ROUNDS=10 MODES="keepalive close reject instr" bench/wxgate.sh
#                                           # the figures in docs/performance.md, ~9 min
#   MODES=instr CONFIGS="B C D" bench/wxgate.sh   # instructions and syscalls only
#
# Own knobs: NO_BUILD=1 skips `cargo build --release --locked`; WXGATE_BIN
# runs another binary (default: the repository's target/release/wxgate).
# The harness installs what it lacks with apt-get (NO_INSTALL=1 forbids it).

set -euo pipefail

if [[ "${1:-}" == "-h" || "${1:-}" == "--help" ]]; then
  sed -n '2,/^$/p' "$0" | sed 's/^# \{0,1\}//'
  echo "run_peers.sh's own knobs: bench/run_peers.sh --help"
  exit 0
fi

BENCH=$(cd "$(dirname "$0")" && pwd)
ROOT=$(dirname "$BENCH")
WXGATE_BIN=${WXGATE_BIN:-$ROOT/target/release/wxgate}

if [[ "${NO_BUILD:-0}" != 1 ]]; then
  (cd "$ROOT" && cargo build --release --locked)
fi
[[ -x "$WXGATE_BIN" ]] || { echo "bench/wxgate.sh: no executable at $WXGATE_BIN" >&2; exit 2; }
# GATEWAY_CMD goes through `sh -c`: the path is single-quoted there.
[[ "$WXGATE_BIN" != *"'"* ]] || { echo "bench/wxgate.sh: WXGATE_BIN must not contain a quote" >&2; exit 2; }

export GATEWAY_CONFIG_TEMPLATE=${GATEWAY_CONFIG_TEMPLATE:-$BENCH/wxgate-bench.toml.tmpl}
# `$GATEWAY_CONFIG` stays literal: run_peers.sh expands it when it starts the
# gateway. `env` execs the binary, so the measured process is wxgate itself.
export GATEWAY_CMD="env RUST_LOG=warn '$WXGATE_BIN' --config \"\$GATEWAY_CONFIG\""
exec "$BENCH/run_peers.sh" "$@"

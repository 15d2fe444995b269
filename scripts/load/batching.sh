#!/usr/bin/env bash
# Batching against one-at-a-time on the same model and machine, side by side: for each round, a
# server per configuration WORKERS:MAX_BATCH (2:1 is one request per caption on 2 workers, the
# server before batching) takes 16 concurrent clients, then 1 client, through caption_load.sh
# (wrk). Prints captions/s and latency per configuration, the rounds interleaved so that a change
# in the machine's load hits every configuration alike.
#
#   scripts/load/batching.sh --model RUN_OR_EXPORT --image FILE.jpg [--bin target/release/captioner]
#                            [--configs "2:1 2:8 1:8"] [--duration 15s] [--rounds 2]
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
bin=target/release/captioner model="" image="" configs="2:1 2:8 1:8" duration=15s rounds=2
while [ $# -gt 0 ]; do
  case "$1" in
    --bin) bin="$2"; shift 2 ;;
    --model) model="$2"; shift 2 ;;
    --image) image="$2"; shift 2 ;;
    --configs) configs="$2"; shift 2 ;;
    --duration) duration="$2"; shift 2 ;;
    --rounds) rounds="$2"; shift 2 ;;
    -h|--help) sed -n '2,9p' "$0"; exit 0 ;;
    *) echo "unknown option: $1" >&2; exit 2 ;;
  esac
done
[ -n "$model" ] && [ -n "$image" ] || { echo "--model and --image are required" >&2; exit 2; }
work="$(mktemp -d)"
server_pid=""
cleanup() {
  if [ -n "$server_pid" ]; then kill -TERM "$server_pid" 2>/dev/null || true; wait "$server_pid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

# One load run: prints "captions/s p50 p95" of the 200s.
measure() {
  local url="$1" pid="$2" connections="$3"
  "$here/caption_load.sh" --url "$url" --pid "$pid" --image "$image" --connections "$connections" \
    --duration "$duration" > "$work/load.txt"
  awk '
    /^STATUS/ { for (i = 2; i <= NF; i++) { split($i, kv, "="); if (kv[1] == 200) ok = kv[2]; else other += kv[2] } }
    /^REQUESTS/ { secs = $4 }
    /^LATENCY_MS/ { split($2, a, "="); split($3, b, "="); p50 = a[2]; p95 = b[2] }
    END { printf "%.1f %s %s %d\n", ok / secs, p50, p95, other }' "$work/load.txt"
}

echo "== $(lscpu | grep 'Model name' | sed 's/  */ /g'); $(nproc) cores; load at start $(cut -d' ' -f1-3 /proc/loadavg)"
echo "== model $model, image $image ($(wc -c < "$image") bytes), $duration per run; latencies in ms"
printf "%-6s %-8s %-10s %12s %9s %9s %12s %9s %9s %8s\n" round workers max-batch "16c capt/s" "16c p50" "16c p95" "1c capt/s" "1c p50" "1c p95" "non-200"
for ((r = 1; r <= rounds; r++)); do
  for config in $configs; do
    workers=${config%%:*} mb=${config##*:}
    port=$(( 20000 + RANDOM % 20000 ))
    url="http://127.0.0.1:$port"
    "$bin" serve --model "$model" --addr "127.0.0.1:$port" --workers "$workers" --queue 256 \
      --max-batch "$mb" 2>"$work/server.log" &
    server_pid=$!
    for _ in $(seq 300); do curl -fs "$url/healthz" >/dev/null 2>&1 && break; sleep 0.1; done
    curl -fs "$url/healthz" >/dev/null || { echo "server did not start:" >&2; cat "$work/server.log" >&2; exit 1; }
    # Warm up: the first captions allocate the network's buffers.
    for _ in 1 2 3 4; do curl -fs -H 'Content-Type: image/jpeg' --data-binary "@$image" "$url/api/caption" >/dev/null; done
    read -r c16 p50_16 p95_16 bad16 < <(measure "$url" "$server_pid" 16)
    read -r c1 p50_1 p95_1 bad1 < <(measure "$url" "$server_pid" 1)
    printf "%-6s %-8s %-10s %12s %9s %9s %12s %9s %9s %8s\n" "$r" "$workers" "$mb" "$c16" "$p50_16" "$p95_16" "$c1" "$p50_1" "$p95_1" "$((bad16 + bad1))"
    kill -TERM "$server_pid"; wait "$server_pid" 2>/dev/null || true; server_pid=""
  done
done
echo "== load at end $(cut -d' ' -f1-3 /proc/loadavg)"

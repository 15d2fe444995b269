#!/usr/bin/env bash
# Soak test for `captioner serve` (issue #16): the demo model under CONNECTIONS concurrent uploads
# for MINUTES, loopback only. Passes when every answer is 200 or 503 (busy), wrk saw no socket
# error other than timeouts it reports, and the server's RSS at the end is within 10% of its RSS
# after the first minute (no leak). Prints a table of RSS samples and a verdict line.
#
#   scripts/load/soak.sh --model demo/run [--binary target/release/captioner] \
#                        [--connections 200] [--minutes 10] [--image FILE]
#
# Without --model it runs `captioner demo` first, into a temporary folder.
# Needs wrk (Debian: apt-get install wrk) and curl.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"

binary="target/release/captioner" model="" connections=200 minutes=10 image="" sample_s=10
while [ $# -gt 0 ]; do
  case "$1" in
    --binary) binary="$2"; shift 2 ;;
    --model) model="$2"; shift 2 ;;
    --connections) connections="$2"; shift 2 ;;
    --minutes) minutes="$2"; shift 2 ;;
    --image) image="$2"; shift 2 ;;
    --sample-seconds) sample_s="$2"; shift 2 ;;
    -h|--help) sed -n '2,11p' "$0"; exit 0 ;;
    *) echo "unknown option: $1" >&2; exit 2 ;;
  esac
done
command -v wrk >/dev/null || { echo "wrk is required (apt-get install wrk)" >&2; exit 1; }
[ -x "$binary" ] || { echo "$binary: not an executable (cargo build --release first)" >&2; exit 2; }

work="$(mktemp -d)"
server_pid="" sampler_pid=""
cleanup() {
  [ -n "$sampler_pid" ] && kill "$sampler_pid" 2>/dev/null || true
  if [ -n "$server_pid" ]; then kill -TERM "$server_pid" 2>/dev/null || true; wait "$server_pid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

if [ -z "$model" ]; then
  echo "== no --model: running the demo to make one"
  "$binary" demo --out "$work/demo" --no-progress >"$work/demo.log" 2>&1 || { cat "$work/demo.log" >&2; exit 1; }
  model="$work/demo/run"
fi
if [ -z "$image" ]; then
  # A held-out style scene the model knows how to caption, rendered by the binary itself.
  "$binary" synth --out "$work/scenes" --images 20 --seed 7 >/dev/null 2>&1 || true
  image="$(find "$work/scenes" -name '*.png' -o -name '*.jpg' 2>/dev/null | sort | head -1)"
  [ -n "$image" ] || { echo "cannot make a test image with synth" >&2; exit 1; }
fi
case "$image" in *.jpg|*.jpeg) content_type="image/jpeg" ;; *) content_type="image/png" ;; esac

port=$(( 20000 + RANDOM % 20000 ))
url="http://127.0.0.1:$port"
"$binary" serve --model "$model" --addr "127.0.0.1:$port" 2>"$work/server.log" &
server_pid=$!
for _ in $(seq 300); do
  curl -fs "$url/healthz" >/dev/null 2>&1 && break
  sleep 0.1
done
curl -fs "$url/healthz" >/dev/null || { echo "server did not start:" >&2; cat "$work/server.log" >&2; exit 1; }

rss_kib() { awk '/^VmRSS/ {print $2}' "/proc/$server_pid/status" 2>/dev/null || echo 0; }
echo "== serve --model $model on $url: $connections connections for $minutes min ($(wc -c <"$image") byte $content_type)"
echo "RSS_START_KIB $(rss_kib)"
(
  t=0
  while sleep "$sample_s"; do
    t=$((t + sample_s))
    echo "$t $(rss_kib)"
  done
) >"$work/rss.txt" &
sampler_pid=$!

threads=2
wrk --threads "$threads" --connections "$connections" --duration "${minutes}m" --timeout 60s \
  --script "$here/caption_load.lua" "$url/api/caption" -- "$image" "$content_type" >"$work/wrk.txt"
kill "$sampler_pid" 2>/dev/null || true
sampler_pid=""
end_rss=$(rss_kib)

echo "== RSS of the server (MiB) every $sample_s s"
echo "| elapsed | RSS MiB |"
echo "|---|---|"
awk '{printf "| %d s | %.1f |\n", $1, $2/1024}' "$work/rss.txt"
echo "== wrk"
grep -E '^(STATUS|ERRORS|REQUESTS|LATENCY_MS)' "$work/wrk.txt"

minute_rss=$(awk '$1 >= 60 {print $2; exit}' "$work/rss.txt")
[ -n "$minute_rss" ] || minute_rss=$end_rss
status_line=$(grep '^STATUS' "$work/wrk.txt")
bad_status=$(echo "$status_line" | tr ' ' '\n' | grep '=' | grep -v -E '^(200|503)=' || true)
errors_line=$(grep '^ERRORS' "$work/wrk.txt")
bad_sockets=$(echo "$errors_line" | tr ' ' '\n' | grep -E '^(connect|read|write)=' | grep -v '=0$' || true)
drift=$(awk -v a="$minute_rss" -v b="$end_rss" 'BEGIN {printf "%.1f", (b - a) * 100 / a}')
within=$(awk -v a="$minute_rss" -v b="$end_rss" 'BEGIN {d = (b - a) / a; if (d < 0) d = -d; print (d <= 0.10) ? "yes" : "no"}')
awk -v a="$minute_rss" -v b="$end_rss" -v d="$drift" 'BEGIN {printf "RSS_AFTER_1_MIN %.1f MiB  RSS_END %.1f MiB  DRIFT %s%%\n", a / 1024, b / 1024, d}'
if [ -z "$bad_status" ] && [ -z "$bad_sockets" ] && [ "$within" = yes ]; then
  echo "SOAK PASS"
else
  echo "SOAK FAIL: statuses other than 200/503: '${bad_status}'; socket errors: '${bad_sockets}'; RSS within 10%: $within"
  tail -20 "$work/server.log" >&2
  exit 1
fi

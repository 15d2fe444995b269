#!/usr/bin/env bash
# Load test for `captioner serve`, loopback only, bounded in time: wrk keeps CONNECTIONS uploads
# in flight for DURATION, then this prints status-code counts, p50/p95 latency and the server's
# peak RSS (VmHWM from /proc).
#
#   scripts/load/caption_load.sh --spawn target/release/captioner     # starts a fake-engine server
#   scripts/load/caption_load.sh --url http://127.0.0.1:7860 --pid PID # against a running server
#
# Options: --connections N (200)  --duration S (10s)  --image FILE (a generated PNG)
#          --fake-delay-ms MS (50, with --spawn)  --workers N (2, with --spawn)  --queue N (64)
# Needs wrk (Debian: apt-get install wrk).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"

url="" pid="" spawn="" image="" connections=200 duration=10s fake_delay=50 workers=2 queue=64
while [ $# -gt 0 ]; do
  case "$1" in
    --url) url="$2"; shift 2 ;;
    --pid) pid="$2"; shift 2 ;;
    --spawn) spawn="$2"; shift 2 ;;
    --image) image="$2"; shift 2 ;;
    --connections) connections="$2"; shift 2 ;;
    --duration) duration="$2"; shift 2 ;;
    --fake-delay-ms) fake_delay="$2"; shift 2 ;;
    --workers) workers="$2"; shift 2 ;;
    --queue) queue="$2"; shift 2 ;;
    -h|--help) sed -n '2,12p' "$0"; exit 0 ;;
    *) echo "unknown option: $1" >&2; exit 2 ;;
  esac
done
command -v wrk >/dev/null || { echo "wrk is required (apt-get install wrk)" >&2; exit 1; }

work="$(mktemp -d)"
server_pid=""
cleanup() {
  if [ -n "$server_pid" ]; then kill -TERM "$server_pid" 2>/dev/null || true; wait "$server_pid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

if [ -n "$spawn" ]; then
  port=$(( 20000 + RANDOM % 20000 ))
  url="http://127.0.0.1:$port"
  "$spawn" serve --fake-engine --fake-delay-ms "$fake_delay" --addr "127.0.0.1:$port" \
    --workers "$workers" --queue "$queue" 2>"$work/server.log" &
  server_pid=$!
  pid=$server_pid
  for _ in $(seq 100); do
    curl -fs "$url/healthz" >/dev/null 2>&1 && break
    sleep 0.1
  done
  curl -fs "$url/healthz" >/dev/null || { echo "server did not start:" >&2; cat "$work/server.log" >&2; exit 1; }
fi
[ -n "$url" ] || url="http://127.0.0.1:7860"
case "$url" in
  http://127.*|http://localhost*|http://\[::1\]*) ;;
  *) echo "refusing $url: this load test runs against loopback only" >&2; exit 2 ;;
esac
if [ -z "$pid" ]; then
  port="${url##*:}"; port="${port%%/*}"
  pid=$(ss -Hltnp "sport = :$port" 2>/dev/null | grep -o 'pid=[0-9]*' | head -1 | cut -d= -f2 || true)
fi

content_type="image/png"
if [ -z "$image" ]; then
  # A 64x48 PNG, so the run measures the server rather than the upload.
  image="$work/load.png"
  base64 -d > "$image" <<'PNG'
iVBORw0KGgoAAAANSUhEUgAAAEAAAAAwCAIAAAAuKetIAAAHB0lEQVR42h3CBxbDAEEA0BzHgagRxA2CqOBiOK6c0Yw2afZqmjTXsO//94PoD8Lv2MTUm5m5haV3H1bWPm1s7ewdHJ2cXVzdfLn79vD042UQ/WH4HZuYejMzt7D07sPK2qeNrZ29g6OTs4urmy933x6efrwMoj8Kv2MTU29m5haW3n1YWfu0sbWzd3B0cnZxdfPl7tvD04+XQfTH4XdsYurNzNzC0rsPK2ufNrZ29g6OTs4urm6+3H17ePrxMoh+EH7HJqbezMwtLL37sLL2aWNrZ+/g6OTs4urmy923h6cfL4PoT8Lv2MTUm5m5haV3H1bWPm1s7ewdHJ2cXVzdfLn79vD042UQ/TD8jk1MvZmZW1h692Fl7dPG1s7ewdHJ2cXVzZe7bw9PP14G0Z+G37GJqTczcwtL7z6srH3a2NrZOzg6Obu4uvly9+3h6cfLIPqz8Ds2MfVmZm5h6d2HlbVPG1s7ewdHJ2cXVzdf7r49PP14GUR/Hn7HJqbezMwtLL37sLL2aWNrZ+/g6OTs4urmy923h6cfL4MoDL9jE1NvZuYWlt59WFn7tLG1s3dwdHJ2cXXz5e7bw9OPl0H0F+F3bGLqzczcwtK7Dytrnza2dvYOjk7OLq5uvtx9e3j68TKIfhR+xyam3szMLSy9+7Cy9mlja2fv4Ojk7OLq5svdt4enHy+D6Mfhd2xi6s3M3MLSuw8ra582tnb2Do5Ozi6ubr7cfXt4+vEyiP4y/I5NTL2ZmVtYevdhZe3TxtbO3sHRydnF1c2Xu28PTz9eBtFPwu/YxNSbmbmFpXcfVtY+bWzt7B0cnZxdXN18ufv28PTjZRD9Vfgdm5h6MzO3sPTuw8rap42tnb2Do5Ozi6ubL3ffHp5+vAyivw6/YxNTb2bmFpbefVhZ+7SxtbN3cHRydnF18+Xu28PTj5dB9Dfhd2xi6s3M3MLSuw8ra582tnb2Do5Ozi6ubr7cfXt4+vEyiP42/I5NTL2ZmVtYevdhZe3TxtbO3sHRydnF1c2Xu28PTz9eBtHfhd+xiak3M3MLS+8+rKx92tja2Ts4Ojm7uLr5cvft4enHyyD6+/A7NjH1ZmZuYendh5W1TxtbO3sHRydnF1c3X+6+PTz9eBlE/xB+xyam3szMLSy9+7Cy9mlja2fv4Ojk7OLq5svdt4enHy+D6Kfhd2xi6s3M3MLSuw8ra582tnb2Do5Ozi6ubr7cfXt4+vEyiH4Wfscmpt7MzC0svfuwsvZpY2tn7+Do5Ozi6ubL3beHpx8vg+gfw+/YxNSbmbmFpXcfVtY+bWzt7B0cnZxdXN18ufv28PTjZRD9PPyOTUy9mZlbWHr3YWXt08bWzt7B0cnZxdXNl7tvD08/XgbRL8Lv2MTUm5m5haV3H1bWPm1s7ewdHJ2cXVzdfLn79vD042UQ/VP4HZuYejMzt7D07sPK2qeNrZ29g6OTs4urmy933x6efrwMol+G37GJqTczcwtL7z6srH3a2NrZOzg6Obu4uvly9+3h6cfLIPrn8Ds2MfVmZm5h6d2HlbVPG1s7ewdHJ2cXVzdf7r49PP14GUT/En7HJqbezMwtLL37sLL2aWNrZ+/g6OTs4urmy923h6cfL4PoX8Pv2MTUm5m5haV3H1bWPm1s7ewdHJ2cXVzdfLn79vD042UQ/Sr8jk1MvZmZW1h692Fl7dPG1s7ewdHJ2cXVzZe7bw9PP14G0a/D79jE1JuZuYWldx9W1j5tbO3sHRydnF1c3Xy5+/bw9ONlEP1b+B2bmHozM7ew9O7Dytqnja2dvYOjk7OLq5svd98enn68DKJ/D79jE1NvZuYWlt59WFn7tLG1s3dwdHJ2cXXz5e7bw9OPl0H0H+F3bGLqzczcwtK7Dytrnza2dvYOjk7OLq5uvtx9e3j68TKI/jP8jk1MvZmZW1h692Fl7dPG1s7ewdHJ2cXVzZe7bw9PP14G0X+F37GJqTczcwtL7z6srH3a2NrZOzg6Obu4uvly9+3h6cfLIPpN+B2bmHozM7ew9O7Dytqnja2dvYOjk7OLq5svd98enn68DKLfht+xiak3M3MLS+8+rKx92tja2Ts4Ojm7uLr5cvft4enHyyD6Xfgdm5h6MzO3sPTuw8rap42tnb2Do5Ozi6ubL3ffHp5+vAyi34ffsYmpNzNzC0vvPqysfdrY2tk7ODo5u7i6+XL37eHpx8sg+u/wOzYx9WZmbmHp3YeVtU8bWzt7B0cnZxdXN1/uvj08/XgZRP8Tfscmpt7MzC0svfuwsvZpY2tn7+Do5Ozi6ubL3beHpx8vg+h/w+/YxNSbmbmFpXcfVtY+bWzt7B0cnZxdXN18ufv28PTjZRD9X/gdm5h6MzO3sPTuw8rap42tnb2Do5Ozi6ubL3ffHp5+vPx/wP9s4u/Bg0IAAAAASUVORK5CYII=
PNG
else
  case "$image" in
    *.jpg|*.jpeg|*.JPG|*.JPEG) content_type="image/jpeg" ;;
    *.webp) content_type="image/webp" ;;
  esac
fi

echo "== wrk: $connections connections for $duration against $url/api/caption ($(wc -c <"$image") byte $content_type)"
threads=2; [ "$connections" -lt 2 ] && threads=1   # wrk needs connections >= threads
wrk --threads "$threads" --connections "$connections" --duration "$duration" --timeout 30s \
  --script "$here/caption_load.lua" "$url/api/caption" -- "$image" "$content_type" | tee "$work/wrk.txt"

echo "== summary"
grep -E '^(STATUS|ERRORS|REQUESTS|LATENCY_MS)' "$work/wrk.txt"
if [ -n "$pid" ] && [ -r "/proc/$pid/status" ]; then
  echo "SERVER_PEAK_RSS $(grep VmHWM "/proc/$pid/status" | awk '{printf "%.1f MiB", $2/1024}') (pid $pid)"
else
  echo "SERVER_PEAK_RSS unknown (pass --pid)"
fi

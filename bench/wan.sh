#!/usr/bin/env bash
# WAN rows (issue 13): ferry at its defaults against peers and against ferry's best fixed
# stream count, over a packet-level emulated link (../shared/tools/wanlink.py: two network
# namespaces joined by TUN devices with one-way delay, random loss each way and a rate
# limit), with the congestion control named per row (Reno is what most desktops and phones
# run; BBR ignores loss).
#
#   W1 download 64 MiB, 40 ms / 1 % / 200 Mbit: ferry (defaults) vs aria2c -x16 -s16 vs curl
#   W2 upload 32 MiB, same link: ferry (defaults) vs tus-js-client parallelUploads 8 (same
#      ferry server) vs ferry --parallel 16 (the best fixed count measured)
#   W3 a clean 100 ms / 0 % / 1 Gbit link: ferry (defaults) vs fixed counts, both directions
#   W4 the W1/W2 link (Reno) dropping to 5 % loss for 10 s from 1.5 s into the transfer
#      (bench/wanlink_burst.py): ferry (defaults) vs ferry's fixed 16, both directions
#
# Usage: bench/wan.sh            (root; needs python3, nodejs/npm, aria2, curl)
# Environment: ROWS (W1 W2 W3 W4), CCS (reno bbr), REPS (3: runs of each ferry
# configuration; medians compared), WANLINK (path to wanlink.py).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$here/.."
rows="${ROWS:-W1 W2 W3 W4}"
ccs="${CCS:-reno bbr}"
reps="${REPS:-3}"
wanlink="${WANLINK:-$root/../shared/tools/wanlink.py}"
ferry="$root/target/release/ferry"
work=/var/tmp/ferry-wan

export DEBIAN_FRONTEND=noninteractive
if ! command -v aria2c >/dev/null || ! command -v curl >/dev/null || ! command -v node >/dev/null; then
  apt-get update -qq && apt-get install -y -qq aria2 curl nodejs npm iproute2 >/dev/null
fi
(cd "$here" && npm ci --no-audit --no-fund --silent)
(cd "$root" && cargo build --release -q)
rm -rf "$work" && mkdir -p "$work"
wl_pid=""; srv_pid=""
stop_link() {
  [ -n "$srv_pid" ] && kill "$srv_pid" 2>/dev/null || true
  [ -n "$wl_pid" ] && kill "$wl_pid" 2>/dev/null || true
  wait 2>/dev/null || true
  srv_pid=""; wl_pid=""
  python3 "$wanlink" down wa wb >/dev/null 2>&1 || true
}
trap 'stop_link; rm -rf "$work"' EXIT

# start_link DELAY_MS LOSS RATE_MBIT CC: the link, and a ferry server in wb on 10.99.0.2:8080.
# With BURST set, the link is run by wanlink_burst.py (SIGUSR1 to $wl_pid starts the burst).
start_link() {
  stop_link
  if [ -n "${BURST:-}" ]; then
    python3 "$here/wanlink_burst.py" "$wanlink" 0.05 10 up wa wb --delay-ms "$1" --loss "$2" --rate-mbit "$3" > "$work/wanlink.log" 2>&1 &
  else
    python3 "$wanlink" up wa wb --delay-ms "$1" --loss "$2" --rate-mbit "$3" > "$work/wanlink.log" 2>&1 &
  fi
  wl_pid=$!
  for _ in $(seq 50); do ip netns exec wa ip addr show wl0 2>/dev/null | grep -q 10.99.0.1 && break; sleep 0.1; done
  sleep 0.5
  for ns in wa wb; do ip netns exec "$ns" sysctl -qw net.ipv4.tcp_congestion_control="$4"; done
  rm -rf "$work/srv"
  ip netns exec wb "$ferry" serve --no-auth --listen 10.99.0.2:8080 --data "$work/srv" > "$work/serve.log" 2>&1 &
  srv_pid=$!
  for _ in $(seq 100); do ip netns exec wa curl -fsS -o /dev/null http://10.99.0.2:8080/healthz 2>/dev/null && break; sleep 0.1; done
}

now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "-" }'; }
results=()
row() { results+=("$(printf '%-4s %-52s %9s %9s %7s  %s' "$@")"); printf '%-4s %-52s %9s %9s %7s  %s\n' "$@"; }
in_a() { ip netns exec wa "$@"; }

head -c $((64 << 20)) /dev/urandom > "$work/d64.bin"
head -c $((32 << 20)) /dev/urandom > "$work/u32.bin"

# ferry download at its defaults (or with extra args); prints seconds.
ferry_down() {
  rm -f "$work/out.bin"*; local t; t=$(now)
  in_a "$ferry" download --json "$@" -o "$work/out.bin" http://10.99.0.2:8080/files/d64.bin > "$work/down.json"
  since "$t"; cmp -s "$work/out.bin" "$work/d64.bin" || { echo "download differs" >&2; exit 1; }
}
# ferry upload at its defaults (or with extra args); prints seconds and bytes sent.
ferry_up() {
  rm -rf "$work/state" "$work/srv/files/u32.bin"; local t; t=$(now)
  in_a env FERRY_STATE_DIR="$work/state" "$ferry" upload --json "$@" --server http://10.99.0.2:8080 "$work/u32.bin" > "$work/up.json"
  echo "$(since "$t") $(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["sent"])' "$work/up.json")"
}

echo "ferry WAN benchmark — $(date -u +%FT%TZ) — $(nproc) cores"
printf '%-4s %-52s %9s %9s %7s  %s\n' row measure ferry peer ratio target

# Runs of one configuration vary (slow-start overshoot, the emulator's own jitter): ferry's
# defaults and its fixed counts run REPS times each, interleaved, and their medians compared.
median() { printf '%s\n' "$@" | sort -g | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }'; }
max() { printf '%s\n' "$@" | sort -g | tail -1; }
min() { printf '%s\n' "$@" | sort -g | head -1; }

if [[ " $rows " == *" W1 "* ]]; then
  for cc in $ccs; do
    start_link 20 0.01 200 "$cc"
    cp "$work/d64.bin" "$work/srv/files/d64.bin"
    fs=(); js=()
    for _ in $(seq "$reps"); do fs+=("$(ferry_down)"); js+=("$(ferry_down -j 16)"); done
    f=$(median "${fs[@]}"); j=$(median "${js[@]}")
    rm -f "$work/a2.bin"; t=$(now)
    in_a aria2c -q -x 16 -s 16 -d "$work" -o a2.bin http://10.99.0.2:8080/files/d64.bin; a=$(since "$t")
    t=$(now); in_a curl -fsS -o "$work/curl.bin" http://10.99.0.2:8080/files/d64.bin; c=$(since "$t")
    row W1 "download 64M 40ms/1%/200M $cc: s, ferry vs aria2c -x16" "$f" "$a" "$(ratio "$f" "$a")" "<= 0.9 (reno)"
    row W1 "download 64M 40ms/1%/200M $cc: s, ferry vs one curl" "$f" "$c" "$(ratio "$f" "$c")" "-"
    row W1 "download 64M 40ms/1%/200M $cc: s, ferry vs ferry -j 16" "$f" "$j" "$(ratio "$f" "$j")" "<= 1.2"
  done
fi

if [[ " $rows " == *" W2 "* ]]; then
  for cc in $ccs; do
    start_link 20 0.01 200 "$cc"
    fs=(); p16s=(); p8s=(); fsents=()
    for _ in $(seq "$reps"); do
      read -r secs sent < <(ferry_up); fs+=("$secs"); fsents+=("$sent")
      read -r secs _ < <(ferry_up --parallel 16); p16s+=("$secs")
      read -r secs _ < <(ferry_up --parallel 8); p8s+=("$secs")
    done
    f=$(median "${fs[@]}"); best=$(min "$(median "${p16s[@]}")" "$(median "${p8s[@]}")")
    t=$(now)
    in_a node "$here/tus_js_upload.mjs" http://10.99.0.2:8080/tus/ "$work/u32.bin" 8 > /dev/null; tj=$(since "$t")
    fsent=$(max "${fsents[@]}")
    row W2 "upload 32M 40ms/1%/200M $cc: s, ferry vs tus-js-client x8" "$f" "$tj" "$(ratio "$f" "$tj")" "<= 0.9 (reno)"
    row W2 "upload 32M 40ms/1%/200M $cc: s, ferry vs best fixed (8, 16)" "$f" "$best" "$(ratio "$f" "$best")" "<= 1.2"
    row W2 "upload 32M 40ms/1%/200M $cc: bytes sent / file (most)" "$fsent" "$((32 << 20))" "$(ratio "$fsent" $((32 << 20)))" "<= 1.05"
  done
fi

if [[ " $rows " == *" W3 "* ]]; then
  start_link 50 0 1000 reno
  cp "$work/d64.bin" "$work/srv/files/d64.bin"
  fs=(); j1s=(); j4s=()
  for _ in $(seq "$reps"); do fs+=("$(ferry_down)"); j1s+=("$(ferry_down -j 1)"); j4s+=("$(ferry_down -j 4)"); done
  f=$(median "${fs[@]}"); best=$(min "$(median "${j1s[@]}")" "$(median "${j4s[@]}")")
  row W3 "download 64M 100ms/0%/1G reno: s, ferry vs best of -j 1, 4" "$f" "$best" "$(ratio "$f" "$best")" "<= 1.2"
  fs=(); p1s=(); p4s=()
  for _ in $(seq "$reps"); do
    read -r secs _ < <(ferry_up); fs+=("$secs")
    read -r secs _ < <(ferry_up --parallel 1); p1s+=("$secs")
    read -r secs _ < <(ferry_up --parallel 4); p4s+=("$secs")
  done
  f=$(median "${fs[@]}"); best=$(min "$(median "${p1s[@]}")" "$(median "${p4s[@]}")")
  row W3 "upload 32M 100ms/0%/1G reno: s, ferry vs best of 1, 4 parts" "$f" "$best" "$(ratio "$f" "$best")" "<= 1.2"
fi

if [[ " $rows " == *" W4 "* ]]; then
  BURST=1 start_link 20 0.01 200 reno
  cp "$work/d64.bin" "$work/srv/files/d64.bin"
  burst_in() { (sleep 1.5; kill -USR1 "$wl_pid") & }
  fs=(); js=()
  for _ in $(seq "$reps"); do
    burst_in; fs+=("$(ferry_down)"); sleep 10
    burst_in; js+=("$(ferry_down -j 16)"); sleep 10
  done
  f=$(median "${fs[@]}"); j=$(median "${js[@]}")
  row W4 "download 64M, 5% loss for 10 s: s, ferry vs -j 16" "$f" "$j" "$(ratio "$f" "$j")" "<= 1.2"
  fs=(); p16s=(); fsents=()
  for _ in $(seq "$reps"); do
    burst_in; read -r secs sent < <(ferry_up); fs+=("$secs"); fsents+=("$sent"); sleep 10
    burst_in; read -r secs _ < <(ferry_up --parallel 16); p16s+=("$secs"); sleep 10
  done
  f=$(median "${fs[@]}"); p16=$(median "${p16s[@]}"); fsent=$(max "${fsents[@]}")
  row W4 "upload 32M, 5% loss for 10 s: s, ferry vs --parallel 16" "$f" "$p16" "$(ratio "$f" "$p16")" "<= 1.2"
  row W4 "upload 32M, 5% loss for 10 s: bytes sent / file (most)" "$fsent" "$((32 << 20))" "$(ratio "$fsent" $((32 << 20)))" "<= 1.05"
fi

echo
echo "copy the rows above into bench/RESULTS.md with the date and machine"

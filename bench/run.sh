#!/usr/bin/env bash
# ferry's benchmark harness: one command, ferry and real peers measured in the same run on
# this machine, printed as a table of ratios. Not a test: nothing here fails a build.
#
#   bench/run.sh            # all rows (needs root for D2's network namespaces)
#   ROWS="U1 D1" bench/run.sh
#
# Settings (env): BENCH_SIZE (default 2G, U1/U2/D1), BENCH_D2_SIZE (256M), BENCH_DIR
# (/var/tmp/ferry-bench, must be on the disk being measured), ROWS (U1 U2 D1 D2 C1 M1 R1 R2).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$here/.."
rows="${ROWS:-U1 U2 D1 D2 C1 M1 R1 R2}"
size_h="${BENCH_SIZE:-2G}"
d2_h="${BENCH_D2_SIZE:-256M}"
work="${BENCH_DIR:-/var/tmp/ferry-bench}"
ferry="$root/target/release/ferry"

# ---- set-up: peers from Debian and npm, ferry in release mode ----
export DEBIAN_FRONTEND=noninteractive
if ! command -v nginx >/dev/null || ! command -v aria2c >/dev/null || ! command -v nft >/dev/null; then
  apt-get update -qq && apt-get install -y -qq nginx-light aria2 curl iproute2 nftables >/dev/null
fi
(cd "$here" && npm ci --no-audit --no-fund --silent)
(cd "$root" && cargo build --release -q && cargo build --release -q -p ferry-store --example commit_rate)
rm -rf "$work" && mkdir -p "$work"
pids=()
cleanup() {
  for p in "${pids[@]:-}"; do kill "$p" 2>/dev/null || true; done
  ip netns del fbs 2>/dev/null || true
  ip netns del fbc 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

bytes() { numfmt --from=iec "$1"; }
size=$(bytes "$size_h")
now() { date +%s.%N; }
rate() { awk -v b="$1" -v s="$2" 'BEGIN { printf "%.0f", b / s / 1e6 }'; }   # MB/s
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "-" }'; }
results=()
row() { results+=("$(printf '%-4s %-46s %12s %12s %7s  %s' "$@")"); printf '%-4s %-46s %12s %12s %7s  %s\n' "$@"; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq 100); do (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null && return 0; sleep 0.1; done; echo "nothing on $1:$2" >&2; return 1; }
start_ferry() { # data-dir port [ns]
  local ns=()
  [ -n "${3:-}" ] && ns=(ip netns exec "$3")
  "${ns[@]}" "$ferry" serve --no-auth --listen "${4:-127.0.0.1}:$2" --data "$1" > "$work/ferry-$2.log" 2>&1 &
  pids+=($!)
  ferry_pid=$!
}

echo "ferry benchmark — $(date -u +%FT%TZ) — $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
printf '%-4s %-46s %12s %12s %7s  %s\n' row measure ferry peer ratio target
head -c "$size" /dev/urandom > "$work/src.bin"

if [[ " $rows " == *" U1 "* ]]; then
  # The disk's own rate: dd with fdatasync, same size.
  t0=$(now); dd if=/dev/zero of="$work/dd.bin" bs=4M count=$((size / 4194304)) conv=fdatasync status=none; t1=$(now)
  dd_rate=$(rate "$size" "$(echo "$t1 - $t0" | bc)"); rm -f "$work/dd.bin"
  p=$(free_port); start_ferry "$work/fd" "$p"; wait_port 127.0.0.1 "$p"
  for par in default 1; do
    flag=(); [ "$par" = 1 ] && flag=(--parallel 1)
    t0=$(now); FERRY_STATE_DIR="$work/state" "$ferry" upload --json "${flag[@]}" --server "http://127.0.0.1:$p" "$work/src.bin" > "$work/u1.json"; t1=$(now)
    f_rate=$(rate "$size" "$(echo "$t1 - $t0" | bc)")
    parts=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["parts"])' "$work/u1.json")
    row U1 "upload $size_h, ferry ($parts parts) vs dd fdatasync MB/s" "$f_rate" "$dd_rate" "$(ratio "$f_rate" "$dd_rate")" ">= 0.85"
    eval "f_rate_$par=$f_rate"
    rm -rf "$work/fd/files"/*
  done
  kill "$ferry_pid"
  tp=$(free_port); node "$here/tus_node_server.mjs" "$tp" "$work/tusd" > "$work/tus-node.log" 2>&1 & pids+=($!); tus_pid=$!
  wait_port 127.0.0.1 "$tp"
  secs=$(node "$here/tus_js_upload.mjs" "http://127.0.0.1:$tp/files" "$work/src.bin")
  t_rate=$(rate "$size" "$secs")
  row U1 "upload $size_h, ferry vs tus-js-client->@tus/server" "$f_rate_default" "$t_rate" "$(ratio "$f_rate_default" "$t_rate")" ">= 1.0"
  kill "$tus_pid"; rm -rf "$work/tusd"
fi

if [[ " $rows " == *" U2 "* ]]; then
  # Same client (curl, one PATCH) against both servers: a server-only comparison.
  curl_patch() { # base create-path
    local loc
    loc=$(curl -sf -D - -o /dev/null -X POST -H 'Tus-Resumable: 1.0.0' -H "Upload-Length: $size" "$1$2" | tr -d '\r' | awk 'tolower($1)=="location:" {print $2}')
    case "$loc" in http*) ;; *) loc="$1$loc" ;; esac
    local t0 t1; t0=$(now)
    curl -sf -o /dev/null -X PATCH -H 'Tus-Resumable: 1.0.0' -H 'Upload-Offset: 0' -H 'Expect:' \
      -H 'Content-Type: application/offset+octet-stream' -T "$work/src.bin" "$loc"
    t1=$(now); rate "$size" "$(echo "$t1 - $t0" | bc)"
  }
  p=$(free_port); start_ferry "$work/fd2" "$p"; wait_port 127.0.0.1 "$p"
  f=$(curl_patch "http://127.0.0.1:$p" /tus/); kill "$ferry_pid"; rm -rf "$work/fd2"
  tp=$(free_port); node "$here/tus_node_server.mjs" "$tp" "$work/tusd" > "$work/tus-node.log" 2>&1 & pids+=($!); tus_pid=$!
  wait_port 127.0.0.1 "$tp"
  t=$(curl_patch "http://127.0.0.1:$tp" /files); kill "$tus_pid"; rm -rf "$work/tusd"
  row U2 "curl PATCH $size_h: ferry serve vs @tus/server MB/s" "$f" "$t" "$(ratio "$f" "$t")" ">= 1.0"
fi

if [[ " $rows " == *" D1 "* ]]; then
  mkdir -p "$work/www"; cp "$work/src.bin" "$work/www/src.bin"; cat "$work/www/src.bin" > /dev/null
  np=$(free_port); mkdir -p "$work/nginx/logs"
  cat > "$work/nginx/nginx.conf" <<CONF
worker_processes 1; daemon off; error_log $work/nginx/logs/error.log; pid $work/nginx/nginx.pid;
events { worker_connections 1024; }
http { access_log off; sendfile on; tcp_nopush on;
  server { listen 127.0.0.1:$np; root $work/www; location / { } } }
CONF
  nginx -p "$work/nginx" -c "$work/nginx/nginx.conf" & pids+=($!); nginx_pid=$!
  p=$(free_port); start_ferry "$work/fd3" "$p" "" 127.0.0.1; wait_port 127.0.0.1 "$p"; wait_port 127.0.0.1 "$np"
  FERRY_STATE_DIR="$work/state" "$ferry" upload --server "http://127.0.0.1:$p" "$work/src.bin" 2>/dev/null
  # Five alternating runs each (the VM is noisy); the medians are compared.
  fr=(); nr=()
  for _ in 1 2 3 4 5; do
    fr+=("$(curl -s -o /dev/null -w '%{speed_download}' "http://127.0.0.1:$p/files/src.bin")")
    nr+=("$(curl -s -o /dev/null -w '%{speed_download}' "http://127.0.0.1:$np/src.bin")")
  done
  median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {printf "%.0f", a[int((NR+1)/2)]/1e6}'; }
  f=$(median "${fr[@]}"); n=$(median "${nr[@]}")
  row D1 "curl download $size_h (median of 5): ferry vs nginx MB/s" "$f" "$n" "$(ratio "$f" "$n")" ">= 0.9"
  kill "$ferry_pid" "$nginx_pid"; rm -rf "$work/www" "$work/fd3"
fi

if [[ " $rows " == *" D2 "* ]]; then
  # Two namespaces over a veth pair: 200 Mbit/s (tbf), 1% loss server->client (nftables),
  # 40 ms RTT (userspace delay relay on the client side: the kernel has no netem).
  ip netns del fbs 2>/dev/null || true; ip netns del fbc 2>/dev/null || true
  ip netns add fbs; ip netns add fbc
  ip link add fbv0 type veth peer name fbv1
  ip link set fbv0 netns fbs; ip link set fbv1 netns fbc
  ip -n fbs addr add 10.77.0.1/24 dev fbv0; ip -n fbc addr add 10.77.0.2/24 dev fbv1
  for ns in fbs fbc; do ip -n "$ns" link set lo up; done
  ip -n fbs link set fbv0 up; ip -n fbc link set fbv1 up
  tc -n fbs qdisc add dev fbv0 root tbf rate 200mbit burst 256kb latency 100ms
  ip netns exec fbs nft add table inet loss
  ip netns exec fbs nft add chain inet loss out '{ type filter hook output priority 0; }'
  ip netns exec fbs nft add rule inet loss out ip daddr 10.77.0.2 numgen random mod 100 '<' 1 drop
  head -c "$(bytes "$d2_h")" "$work/src.bin" > "$work/d2.bin"
  start_ferry "$work/fd4" 8080 fbs 10.77.0.1; sleep 1
  ip netns exec fbs env FERRY_STATE_DIR="$work/state" "$ferry" upload --server http://10.77.0.1:8080 "$work/d2.bin" 2>/dev/null
  ip netns exec fbc python3 "$here/delay_proxy.py" 9000 10.77.0.1 8080 20 & pids+=($!); proxy_pid=$!
  sleep 1
  t0=$(now); ip netns exec fbc "$ferry" download -j 8 --json --server http://127.0.0.1:9000 d2.bin -o "$work/d2-ferry.bin" > /dev/null; t1=$(now)
  f=$(echo "$t1 - $t0" | bc)
  t0=$(now); ip netns exec fbc aria2c -q -x 8 -s 8 -k 1M --allow-overwrite=true -d "$work" -o d2-aria.bin http://127.0.0.1:9000/files/d2.bin; t1=$(now)
  a=$(echo "$t1 - $t0" | bc)
  cmp -s "$work/d2-ferry.bin" "$work/d2.bin" && cmp -s "$work/d2-aria.bin" "$work/d2.bin" || echo "D2: a download differs!" >&2
  row D2 "segmented $d2_h, 40ms RTT 1% loss: -j8 vs aria2c s" "$(printf %.1f "$f")" "$(printf %.1f "$a")" "$(ratio "$f" "$a")" "<= 1.0"
  kill "$proxy_pid" "$ferry_pid" 2>/dev/null || true
  ip netns del fbs; ip netns del fbc
fi

if [[ " $rows " == *" C1 "* ]]; then
  # N slow uploads (64 KiB trickled over 20 s each), ferry vs @tus/server, both with the
  # same descriptor limit; the harness reads complete responses from both.
  ulimit -n "$(ulimit -Hn)"
  for n in ${C1_COUNTS:-1000 10000}; do
    p=$(free_port); start_ferry "$work/fd5" "$p"; wait_port 127.0.0.1 "$p"
    read -r f_err f_busy _ f_p99 < <(python3 "$here/slow_uploads.py" 127.0.0.1 "$p" "$n" 65536 20)
    f_rss=$(awk '/VmHWM/ {printf "%.0f", $2/1024}' "/proc/$ferry_pid/status")
    kill "$ferry_pid"; rm -rf "$work/fd5"
    tp=$(free_port); node "$here/tus_node_server.mjs" "$tp" "$work/tusd" > "$work/tus-node.log" 2>&1 & pids+=($!); tus_pid=$!
    wait_port 127.0.0.1 "$tp"
    read -r t_err t_busy _ t_p99 < <(python3 "$here/slow_uploads.py" 127.0.0.1 "$tp" "$n" 65536 20 /files)
    t_rss=$(awk '/VmHWM/ {printf "%.0f", $2/1024}' "/proc/$tus_pid/status")
    kill "$tus_pid"; rm -rf "$work/tusd"
    row C1 "$n slow uploads: peak RSS MB" "$f_rss" "$t_rss" "$(ratio "$f_rss" "$t_rss")" "< 512 MB at 10,000"
    row C1 "$n slow uploads: errors (+503 turned away)" "$f_err+$f_busy" "$t_err+$t_busy" "-" "0"
    row C1 "$n slow uploads: p99 create ms" "$f_p99" "$t_p99" "$(ratio "$f_p99" "$t_p99")" "-"
  done
fi

if [[ " $rows " == *" M1 "* ]]; then
  # Metadata writes with 10,000 uploads committing at once (each commit waits for its
  # previous one, as a PATCH does), against one upload committing alone on the same store.
  read -r m_creates m_commits m_lone < <("$root/target/release/examples/commit_rate" 10000 5 "$work")
  row M1 "10000 uploads: offset commits/s (vs one alone)" "$m_commits" "$m_lone" "$(ratio "$m_commits" "$m_lone")" "no wait for a pool connection"
  row M1 "10000 uploads created at once: creations/s" "$m_creates" "-" "-" "-"
fi

if [[ " $rows " == *" R1 "* ]]; then
  head -c 536870912 "$work/src.bin" > "$work/r1.bin"
  p=$(free_port); start_ferry "$work/fd6" "$p"; wait_port 127.0.0.1 "$p"
  FERRY_STATE_DIR="$work/rstate" "$ferry" upload --parallel 1 --limit-rate 100M --server "http://127.0.0.1:$p" "$work/r1.bin" 2>/dev/null & up_pid=$!
  for _ in $(seq 200); do
    s=$(stat -c %s "$work"/fd6/staging/*.part 2>/dev/null | head -1 || true); [ "${s:-0}" -ge 268435456 ] && break; sleep 0.05
  done
  staged=$(stat -c %s "$work"/fd6/staging/*.part | head -1)
  kill -TERM "$up_pid"; wait "$up_pid" || true
  FERRY_STATE_DIR="$work/rstate" "$ferry" upload --json --parallel 1 --server "http://127.0.0.1:$p" "$work/r1.bin" > "$work/r1.json"
  read -r kept sent < <(python3 -c 'import json,sys; j=json.load(open(sys.argv[1])); print(j["resumed_from"], j["sent"])' "$work/r1.json")
  resent=$(( sent - (536870912 - kept) + (staged > kept ? staged - kept : 0) ))
  row R1 "interrupt at 50% of 512M, resume: bytes re-sent" "$resent" "-" "-" "<= one PATCH (~1.5 s)"
  kill "$ferry_pid"
fi

if [[ " $rows " == *" R2 "* ]]; then
  # The server, not the client, dies: kill -9 at ~45% under `ferry upload` at its defaults,
  # restart on the same port; the client carries on by itself.
  head -c 536870912 "$work/src.bin" > "$work/r2.bin"
  p=$(free_port); start_ferry "$work/fd7" "$p"; wait_port 127.0.0.1 "$p"
  FERRY_STATE_DIR="$work/r2state" "$ferry" upload --json --limit-rate 100M --server "http://127.0.0.1:$p" "$work/r2.bin" > "$work/r2.json" 2>/dev/null & up_pid=$!
  sleep 2.5
  kill -9 "$ferry_pid"; sleep 0.3
  start_ferry "$work/fd7" "$p"; wait_port 127.0.0.1 "$p"
  wait "$up_pid"
  sent=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["sent"])' "$work/r2.json")
  row R2 "kill -9 of the server at ~45% of 512M: bytes re-sent" "$(( sent - 536870912 ))" "-" "-" "<= max(64 MiB, 2 s) = 200 MB"
  kill "$ferry_pid"
fi

echo
echo "copy the rows above into bench/RESULTS.md with the date and machine"

#!/usr/bin/env bash
# Browser row (issue 15): upload one file through ferry's web app in Debian's chromium
# (tus-js-client, 64 MiB PATCHes, the whole-file SHA-256 computed in the page while it
# uploads and checked by the server) vs `ferry upload` of the same file to the same server,
# in the same run, loopback. Reports the medians and the ratio.
#
# Usage: bench/browser.sh     Environment: SIZE_MB (1024), REPS (3)
# Needs chromium and tests/browser's node modules (npm ci there).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$here/.."
size_mb="${SIZE_MB:-1024}"
reps="${REPS:-3}"
ferry="$root/target/release/ferry"
work=/var/tmp/ferry-browser-bench
(cd "$root" && cargo build --release -q -p ferry)
(cd "$root/tests/browser" && [ -d node_modules ] || npm ci --no-audit --no-fund --silent)
rm -rf "$work" && mkdir -p "$work/home"
srv_pid=""
trap 'kill $srv_pid 2>/dev/null || true; rm -rf "$work"' EXIT
head -c "$((size_mb << 20))" /dev/urandom > "$work/big.bin"
mkdir -p "$work/data"
echo alice-pw | "$ferry" user add alice --password-stdin --data "$work/data" 2>/dev/null
"$ferry" serve --listen 127.0.0.1:0 --data "$work/data" > "$work/banner" 2> "$work/server.log" &
srv_pid=$!
for _ in $(seq 100); do grep -q http:// "$work/banner" 2>/dev/null && break; sleep 0.1; done
url="$(grep -o 'http://[0-9.:]*' "$work/banner" | head -1)"
export HOME="$work/home"
echo alice-pw | "$ferry" login -s "$url" --user alice --password-stdin > /dev/null

median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
secs() { local t0 t1; t0=$(date +%s.%N); "$@" > /dev/null 2>&1; t1=$(date +%s.%N); echo "$t1 - $t0" | bc -l; }

browser_t=$(node "$here/browser_upload.mjs" "$url" "$work/big.bin" "$reps" | median)
cli_t=$(for i in $(seq "$reps"); do
  secs "$ferry" upload -q -s "$url" --dir "cli$i" "$work/big.bin"
done | median)
cmp "$work/big.bin" "$work/data/files/~alice/cli1/big.bin"
printf 'B1 upload %s MiB from the browser: web app %.0f MB/s (%.2f s), ferry upload %.0f MB/s (%.2f s), ratio %.2f\n' \
  "$size_mb" "$(echo "$size_mb * 1.048576 / $browser_t" | bc -l)" "$browser_t" \
  "$(echo "$size_mb * 1.048576 / $cli_t" | bc -l)" "$cli_t" "$(echo "$cli_t / $browser_t" | bc -l)"

#!/usr/bin/env bash
# Folder row (issue 11): upload a folder of many small files with `ferry upload -r` vs
# `rclone copy` to the same ferry server over WebDAV, in the same run; both move 8 files at
# once (ferry --jobs 8, rclone --transfers 8 --checkers 8). Reports files/s and the ratio.
#
# Usage: bench/folder.sh     Environment: FILES (10000), SIZE (4096 bytes), REPS (3; medians)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$here/.."
files="${FILES:-10000}"
size="${SIZE:-4096}"
reps="${REPS:-3}"
ferry="$root/target/release/ferry"
work=/var/tmp/ferry-folder-bench
command -v rclone >/dev/null || { echo "rclone is needed (apt-get install rclone)" >&2; exit 1; }
(cd "$root" && cargo build --release -q -p ferry)
rm -rf "$work" && mkdir -p "$work/src"
srv_pid=""
trap 'kill $srv_pid 2>/dev/null || true; rm -rf "$work"' EXIT
python3 - "$work/src" "$files" "$size" <<'PY'
import os, sys
d, n, size = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
for i in range(n):
    sub = os.path.join(d, f"d{i // 1000:02}")
    os.makedirs(sub, exist_ok=True)
    with open(os.path.join(sub, f"f{i:05}.bin"), "wb") as f:
        f.write(os.urandom(size))
PY
"$ferry" serve --no-auth --listen 127.0.0.1:0 --data "$work/data" > "$work/banner" 2> "$work/server.log" &
srv_pid=$!
for _ in $(seq 100); do grep -q http:// "$work/banner" 2>/dev/null && break; sleep 0.1; done
url="$(grep -o 'http://[0-9.:]*' "$work/banner" | head -1)"

median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
secs() { local t0 t1; t0=$(date +%s.%N); "$@" > /dev/null 2>&1; t1=$(date +%s.%N); echo "$t1 - $t0" | bc -l; }

ferry_t=$(for i in $(seq "$reps"); do
  secs env FERRY_STATE_DIR="$work/state" "$ferry" upload -r -q --jobs 8 -s "$url" --dir "f$i" "$work/src"
done | median)
rclone_t=$(for i in $(seq "$reps"); do
  secs rclone copy --transfers 8 --checkers 8 --webdav-url "$url/dav/" "$work/src" ":webdav:r$i/src"
done | median)
# Both trees must be complete.
for i in $(seq "$reps"); do
  for t in "f$i" "r$i"; do
    n=$(find "$work/data/files/$t/src" -type f | wc -l)
    [ "$n" = "$files" ] || { echo "$t has $n files, not $files" >&2; exit 1; }
  done
done
rerun_t=$(secs env FERRY_STATE_DIR="$work/state" "$ferry" upload -r -q --jobs 8 -s "$url" --dir f1 "$work/src")
printf 'F1 upload a folder of %s files of %s B: ferry %.0f files/s (%.2f s), rclone over WebDAV %.0f files/s (%.2f s), ratio %.2f; ferry re-run (all skipped) %.2f s\n' \
  "$files" "$size" "$(echo "$files / $ferry_t" | bc -l)" "$ferry_t" "$(echo "$files / $rclone_t" | bc -l)" "$rclone_t" \
  "$(echo "$rclone_t / $ferry_t" | bc -l)" "$rerun_t"

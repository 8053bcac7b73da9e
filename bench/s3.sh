#!/usr/bin/env bash
# S3 row (issue 14): upload a file through a ferry node that keeps its bytes in S3 (moto)
# vs boto3's own multipart upload (upload_file, 8 MiB parts, 10 threads) straight into the
# same moto, in the same run; the ratio is ferry's rate over boto3's. moto is a single
# Python process, so both are bounded by it: the row shows what ferry's relaying costs.
#
# Usage: bench/s3.sh     Environment: SIZE (1G), REPS (3; medians), PORT (54340)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$here/.."
size="${SIZE:-1G}"
reps="${REPS:-3}"
port="${PORT:-54340}"
ferry="$root/target/release/ferry"
work=/var/tmp/ferry-s3-bench
venv="$root/target/bench-moto-venv"

[ -x "$venv/bin/moto_server" ] || { python3 -m venv "$venv" && "$venv/bin/pip" install -q 'moto[server]==5.2.5' boto3; }
(cd "$root" && cargo build --release -q)
rm -rf "$work" && mkdir -p "$work"
moto_pid=""; srv_pid=""
trap 'kill $srv_pid $moto_pid 2>/dev/null || true; rm -rf "$work"' EXIT
"$venv/bin/moto_server" -H 127.0.0.1 -p "$port" > "$work/moto.log" 2>&1 &
moto_pid=$!
for _ in $(seq 50); do curl -sf -o /dev/null "http://127.0.0.1:$port/" && break; sleep 0.2; done
curl -sf -X PUT "http://127.0.0.1:$port/bench" > /dev/null
export AWS_ENDPOINT_URL="http://127.0.0.1:$port" AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test AWS_REGION=us-east-1
head -c "$size" /dev/urandom > "$work/in.bin" 2>/dev/null || dd if=/dev/urandom of="$work/in.bin" bs=1M count=$(( $(numfmt --from=iec "$size") >> 20 )) status=none
bytes=$(stat -c %s "$work/in.bin")

"$ferry" serve --no-auth --listen 127.0.0.1:0 --data "$work/data" --blobs s3://bench/ferry > "$work/banner" 2> "$work/server.log" &
srv_pid=$!
for _ in $(seq 100); do grep -q http:// "$work/banner" 2>/dev/null && break; sleep 0.1; done
url="$(grep -o 'http://[0-9.:]*' "$work/banner" | head -1)"

median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
secs() { local t0 t1; t0=$(date +%s.%N); "$@" > /dev/null; t1=$(date +%s.%N); echo "$t1 - $t0" | bc -l; }

ferry_t=$(for i in $(seq "$reps"); do
  secs "$ferry" upload --json --server "$url" --dir "r$i" "$work/in.bin"
done | median)
boto_t=$(for i in $(seq "$reps"); do
  secs "$venv/bin/python" -c "
import boto3, sys
from boto3.s3.transfer import TransferConfig
s3 = boto3.client('s3')
s3.upload_file(sys.argv[1], 'bench', 'boto/r$i', Config=TransferConfig(multipart_chunksize=8 << 20))
" "$work/in.bin"
done | median)
rate() { echo "$bytes / $1 / 1000000" | bc -l | xargs printf '%.0f'; }
printf 'S1 upload %s to S3 (moto): ferry node %s MB/s, boto3 multipart %s MB/s, ratio %.2f\n' \
  "$size" "$(rate "$ferry_t")" "$(rate "$boto_t")" "$(echo "$boto_t / $ferry_t" | bc -l)"

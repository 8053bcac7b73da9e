#!/usr/bin/env bash
# A/B of two ferry release binaries in one run: U1 (`ferry upload` of 2 GiB at its
# defaults) and U2 (one `curl -X PATCH -T` of 2 GiB), alternating old and new each round.
#   bench/ab_upload.sh OLD_BINARY NEW_BINARY [ROUNDS]
# Build the old one from a worktree with its own CARGO_TARGET_DIR (sharing target/ with
# another checkout of the same crates leaves stale artifacts behind).
set -euo pipefail
old=$1; new=$2; rounds=${3:-3}
work=/var/tmp/ferry-ab; rm -rf $work; mkdir -p $work
head -c 2147483648 /dev/urandom > $work/src.bin
size=2147483648
now() { date +%s.%N; }
rate() { awk -v b="$1" -v s="$2" 'BEGIN { printf "%.0f", b / s / 1e6 }'; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq 100); do (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null && return 0; sleep 0.1; done; return 1; }
for r in $(seq $rounds); do
  for which in old new; do
    bin=${!which}
    p=$(free_port); rm -rf $work/d; $bin serve --no-auth --listen 127.0.0.1:$p --data $work/d > $work/s.log 2>&1 & sp=$!
    wait_port 127.0.0.1 $p
    t0=$(now); FERRY_STATE_DIR=$work/st $bin upload --json --server http://127.0.0.1:$p $work/src.bin > $work/u.json; t1=$(now)
    u1=$(rate $size $(echo "$t1 - $t0" | bc))
    rm -rf $work/d/files/*
    loc=$(curl -sf -D - -o /dev/null -X POST -H 'Tus-Resumable: 1.0.0' -H "Upload-Length: $size" http://127.0.0.1:$p/tus/ | tr -d '\r' | awk 'tolower($1)=="location:" {print $2}')
    case "$loc" in http*) ;; *) loc="http://127.0.0.1:$p$loc" ;; esac
    t0=$(now); curl -sf -o /dev/null -X PATCH -H 'Tus-Resumable: 1.0.0' -H 'Upload-Offset: 0' -H 'Expect:' -H 'Content-Type: application/offset+octet-stream' -T $work/src.bin "$loc"; t1=$(now)
    u2=$(rate $size $(echo "$t1 - $t0" | bc))
    kill $sp; wait $sp 2>/dev/null || true
    echo "round $r $which U1 $u1 MB/s U2 $u2 MB/s"
  done
done
rm -rf $work

#!/usr/bin/env bash
# P2P rows (issue 10), release build, in one run on one veth pair between two network
# namespaces (no NAT): bob's `ferry inbox --watch --receive-into` in namespace A (with the
# server), alice's `ferry send --via direct` in namespace B, vs plain TCP on the same link
# (curl downloading the same file from ferry serve in A to B), and the same transfer forced
# through the server's relay (FERRY_P2P_PATHS=relay). Times are medians of REPS.
#
# Usage: bench/p2p.sh     Environment: SIZE (1G), REPS (3)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$here/.."
size="${SIZE:-1G}"
reps="${REPS:-3}"
ferry="$root/target/release/ferry"
work=/var/tmp/ferry-p2p-bench
pids=""
cleanup() { kill $pids 2>/dev/null || true; ip netns del pb-a 2>/dev/null || true; ip netns del pb-b 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
(cd "$root" && cargo build --release -q)
rm -rf "$work" && mkdir -p "$work"
ip netns del pb-a 2>/dev/null || true; ip netns del pb-b 2>/dev/null || true
ip netns add pb-a; ip netns add pb-b
ip link add veth-a netns pb-a type veth peer name veth-b netns pb-b
ip -n pb-a addr add 10.9.0.1/24 dev veth-a; ip -n pb-b addr add 10.9.0.2/24 dev veth-b
for n in pb-a pb-b; do ip -n "$n" link set lo up; done
ip -n pb-a link set veth-a up; ip -n pb-b link set veth-b up

mkdir -p "$work/data"
for u in alice bob; do echo "$u-pw" | "$ferry" user add "$u" --password-stdin --data "$work/data" >/dev/null 2>&1; done
head -c "$size" /dev/urandom > "$work/in.bin"
mkdir -p "$work/data/files/~alice" && cp "$work/in.bin" "$work/data/files/~alice/in.bin"
ip netns exec pb-a "$ferry" serve --listen 10.9.0.1:8080 --data "$work/data" --heartbeat 1s > "$work/serve.out" 2> "$work/serve.log" &
pids="$pids $!"
for _ in $(seq 100); do grep -q http:// "$work/serve.out" 2>/dev/null && break; sleep 0.1; done
as() { local n="$1" u="$2"; shift 2; ip netns exec "$n" env FERRY_CONFIG_DIR="$work/cfg-$u" FERRY_STATE_DIR="$work/state-$u" FERRY_SERVER=http://10.9.0.1:8080 "$@"; }
echo bob-pw | as pb-a bob "$ferry" login --user bob --password-stdin >/dev/null 2>&1
echo alice-pw | as pb-b alice "$ferry" login --user alice --password-stdin >/dev/null 2>&1

median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
secs() { local t0 t1; t0=$(date +%s.%N); "$@" > /dev/null; t1=$(date +%s.%N); echo "$t1 - $t0" | bc -l; }

# run_p2p PATHS: REPS direct sends, each into a fresh folder; prints the median seconds.
run_p2p() {
  local paths="$1" i
  for i in $(seq "$reps"); do
    rm -rf "$work/inbox"; mkdir -p "$work/inbox"
    as pb-a bob env FERRY_P2P_PATHS="$paths" "$ferry" inbox --watch --receive-into "$work/inbox" > /dev/null 2>&1 &
    local w=$!
    for _ in $(seq 100); do
      ip netns exec pb-b curl -sf -o /dev/null -u alice:alice-pw http://10.9.0.1:8080/api/p2p/peers/bob && break; sleep 0.1
    done
    cp "$work/in.bin" "$work/send-$i.bin"
    secs as pb-b alice env FERRY_P2P_PATHS="$paths" "$ferry" send --to bob --via direct "$work/send-$i.bin"
    cmp "$work/in.bin" "$work/inbox/send-$i.bin"
    kill "$w"; wait "$w" 2>/dev/null || true
    rm -f "$work/send-$i.bin"
    sleep 3.5 # bob's registration lapses before the next round registers again
  done | median
}
tcp=$(for i in $(seq "$reps"); do
  secs ip netns exec pb-b curl -sf -u alice:alice-pw -o "$work/tcp.bin" http://10.9.0.1:8080/files/~alice/in.bin
done | median)
cmp "$work/in.bin" "$work/tcp.bin"
direct=$(run_p2p any)
relay=$(run_p2p relay)
printf '%-4s %-56s %9s %9s %7s\n' row measure ferry tcp ratio
printf '%-4s %-56s %9.2f %9.2f %7.2f\n' P1 "send $size direct over a veth vs curl (s, median of $reps)" "$direct" "$tcp" "$(echo "$tcp / $direct" | bc -l)"
printf '%-4s %-56s %9.2f %9.2f %7.2f\n' P2 "send $size through the relay vs curl (s, median of $reps)" "$relay" "$tcp" "$(echo "$tcp / $relay" | bc -l)"

#!/usr/bin/env bash
# The NAT lab (issue 10): two hosts behind two NAT routers and the ferry server on a
# "public" bridge, all in network namespaces of this machine (no veth reaches the host's own
# namespace, so no packet leaves the lab). For each pair of NAT types, bob (behind router A)
# watches his inbox, alice (behind router B) sends him a file with `--via direct`, and the
# path the transfer took (direct or relay) is compared with what is expected; every file's
# SHA-256 is checked.
#
#   cone: port-restricted cone (nft masquerade, port-preserving; inbound only for flows
#         already out; new inbound to the router itself dropped — see notes §5's pitfall)
#   sym:  symmetric (nft masquerade fully-random: a new port per destination)
#   full: full cone (an nft map: a UDP mapping takes packets from anyone)
#   upnp: symmetric, with Debian's miniupnpd (nftables build, unpacked, never installed as a
#         service) offering UPnP IGD, NAT-PMP and PCP port mappings to the LAN
#
# Then a path switch: during one cone x cone transfer, UDP between the two routers is
# dropped (the transfer goes on through the relay) and allowed again (back to direct); the
# sender's JSON lists the paths it used and the bytes it sent twice.
#
# Needs root, nft, ip, bc; for the upnp case MINIUPNPD=/path/to/miniupnpd (the nftables
# build). Usage: lab.sh [FERRY_BIN] [CASE...]   (cases: cone-cone full-sym sym-sym sym-upnp switch)
set -euo pipefail
ferry="$(realpath "${1:-$(dirname "$0")/../../target/debug/ferry}")"
shift || true
cases="${*:-cone-cone full-sym sym-sym sym-upnp switch}"
work="$(mktemp -d)"
PUB=11.0.0  # a public-looking range, safe inside isolated namespaces
NS="inet srv nA nB hA hB"
pids=""

cleanup() {
  kill $pids 2>/dev/null || true
  for n in $NS; do ip netns del "lab-$n" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

x() { local n="$1"; shift; ip netns exec "lab-$n" "$@"; }

# up NAT_A NAT_B: builds the lab with router A (bob's) and router B (alice's) of those types.
up() {
  for n in $NS; do ip netns del "lab-$n" 2>/dev/null || true; ip netns add "lab-$n"; x "$n" ip link set lo up; done
  x inet ip link add br0 type bridge
  x inet ip link set br0 up
  # the server on the bridge
  ip link add wan netns lab-srv type veth peer name up-srv netns lab-inet
  x inet ip link set up-srv master br0 up
  x srv ip addr add "$PUB.10/24" dev wan
  x srv ip link set wan up
  local i=1
  for side in A B; do
    local r="n$side" h="h$side" nat="$1"; shift
    ip link add wan netns "lab-$r" type veth peer name "up-$r" netns lab-inet
    x inet ip link set "up-$r" master br0 up
    x "$r" ip addr add "$PUB.$i/24" dev wan
    x "$r" ip link set wan up
    ip link add lan netns "lab-$r" type veth peer name eth0 netns "lab-$h"
    x "$r" ip addr add "10.0.$i.1/24" dev lan
    x "$r" ip link set lan up
    x "$h" ip addr add "10.0.$i.2/24" dev eth0
    x "$h" ip link set eth0 up
    x "$h" ip route add default via "10.0.$i.1"
    x "$r" sysctl -qw net.ipv4.ip_forward=1
    if [ "$nat" = full ]; then
      # Full cone: a UDP mapping, once made, takes packets from anyone (patchbay's nft map).
      x "$r" nft -f - <<EOF
table ip nat {
  map fullcone { type inet_service : ipv4_addr . inet_service; flags dynamic,timeout; timeout 5m; }
  chain pre { type nat hook prerouting priority -100;
    iifname "wan" meta l4proto udp dnat ip addr . port to udp dport map @fullcone
  }
  chain post { type nat hook postrouting priority 100;
    oifname "wan" meta l4proto udp update @fullcone { udp sport : ip saddr . udp sport }
    oifname "wan" snat to $PUB.$i
  }
}
table ip filter {
  chain input { type filter hook input priority 0; policy accept;
    iifname "wan" ct state new drop
  }
}
EOF
    elif [ "$nat" = upnp ]; then
      # Symmetric, plus the chains miniupnpd fills with the mappings it grants (its
      # defaults: table inet filter; chains miniupnpd, prerouting_miniupnpd, postrouting_miniupnpd).
      x "$r" nft -f - <<EOF
table inet filter {
  chain forward { type filter hook forward priority 0; policy accept;
    jump miniupnpd
    iifname "wan" ct state established,related accept
    iifname "wan" drop
  }
  chain miniupnpd { }
  chain input { type filter hook input priority 0; policy accept;
    iifname "wan" ct state new drop
  }
  chain prerouting { type nat hook prerouting priority -100; policy accept; jump prerouting_miniupnpd; }
  chain prerouting_miniupnpd { }
  chain postrouting { type nat hook postrouting priority 100; policy accept;
    jump postrouting_miniupnpd
    oifname "wan" masquerade fully-random
  }
  chain postrouting_miniupnpd { }
}
EOF
      cat > "$work/upnp-$r.conf" <<EOF
ext_ifname=wan
listening_ip=lan
enable_natpmp=yes
enable_upnp=yes
secure_mode=yes
system_uptime=yes
uuid=3e1b5f1e-0000-4000-8000-00000000000$i
upnp_table_name=filter
upnp_nat_table_name=filter
allow 1024-65535 10.0.$i.0/24 1024-65535
deny 0-65535 0.0.0.0/0 0-65535
EOF
      x "$r" "$MINIUPNPD" -f "$work/upnp-$r.conf" -d -P "$work/upnp-$r.pid" > "$work/upnp-$r.log" 2>&1 &
      pids="$pids $!"
    else
      local masq="masquerade"
      [ "$nat" = sym ] && masq="masquerade fully-random"
      x "$r" nft -f - <<EOF
table ip nat {
  chain post { type nat hook postrouting priority 100; oifname "wan" $masq; }
}
table ip filter {
  chain forward { type filter hook forward priority 0; policy accept;
    iifname "wan" ct state established,related accept
    iifname "wan" drop
  }
  chain input { type filter hook input priority 0; policy accept;
    iifname "wan" ct state new drop
  }
}
EOF
    fi
    i=$((i + 1))
  done
}

# serve: ferry on the public bridge, users alice and bob.
serve() {
  rm -rf "$work/data"
  mkdir -p "$work/data"
  for u in alice bob; do echo "$u-pw" | "$ferry" user add "$u" --password-stdin --data "$work/data" >/dev/null 2>&1; done
  x srv "$ferry" serve --listen "$PUB.10:8080" --data "$work/data" --heartbeat 1s > "$work/serve.out" 2> "$work/serve.log" &
  pids="$pids $!"
  for _ in $(seq 100); do grep -q http:// "$work/serve.out" 2>/dev/null && break; sleep 0.1; done
}

# as HOST USER ARGS…: the ferry client of USER, run on HOST.
as() {
  local h="$1" u="$2"; shift 2
  x "$h" env FERRY_CONFIG_DIR="$work/cfg-$u" FERRY_STATE_DIR="$work/state-$u" FERRY_SERVER="http://$PUB.10:8080" "$ferry" "$@"
}

# bob_watching DIR: the server up, both users logged in, bob's `inbox --watch` receiving into
# DIR (its pid in $watcher) and registered for direct transfers.
bob_watching() {
  serve
  echo bob-pw | as hA bob login --user bob --password-stdin >/dev/null 2>&1
  echo alice-pw | as hB alice login --user alice --password-stdin >/dev/null 2>&1
  mkdir -p "$1"
  as hA bob inbox --watch --json --receive-into "$1" > "$work/bob.out" 2> "$work/bob.err" &
  watcher=$!
  pids="$pids $watcher"
  for _ in $(seq 100); do
    x hB curl -sf -o /dev/null -u alice:alice-pw "http://$PUB.10:8080/api/p2p/peers/bob" && break
    sleep 0.2
  done
}

# case NAT_A NAT_B EXPECTED_PATH
case_() {
  local a="$1" b="$2" want="$3"
  up "$a" "$b"
  bob_watching "$work/inbox-$a-$b"
  local watcher=$watcher
  # ferry doctor on both sides: public address behind the NAT, port mapping where offered,
  # and from alice whether a direct path to bob's client comes up.
  local doc_b doc_a
  doc_b="$(as hA bob doctor --json)"
  doc_a="$(as hB alice doctor --json --to bob)"
  echo "  doctor (bob):   $doc_b"
  echo "  doctor (alice): $doc_a"
  echo "$doc_b" | grep -q "\"reflexive\":\"$PUB.1:" || { echo "doctor: bob's public address is not router A's" >&2; return 1; }
  echo "$doc_b" | grep -q '"behind_nat":true' || { echo "doctor: bob not seen behind a NAT" >&2; return 1; }
  if [ "$a" = upnp ]; then
    echo "$doc_b" | grep -q '"port_mapping":\["UPnP"' || { echo "doctor: no port mapping seen behind miniupnpd" >&2; return 1; }
  else
    echo "$doc_b" | grep -q '"port_mapping":\[\]' || { echo "doctor: port mapping seen where none is offered" >&2; return 1; }
  fi
  if [ "$want" = direct ]; then
    echo "$doc_a" | grep -q '"direct":true' || { echo "doctor: no direct path to bob" >&2; return 1; }
  else
    echo "$doc_a" | grep -q '"direct":false,"direct_after_ms":null,"reachable":true' || { echo "doctor: bob not reached through the relay" >&2; return 1; }
  fi
  head -c 16000000 /dev/urandom > "$work/file-$a-$b.bin"
  local t0 t1 out
  t0=$(date +%s.%N)
  out="$(as hB alice send --to bob --via direct --json "$work/file-$a-$b.bin" 2> "$work/alice.err")" || {
    echo "send failed for $a x $b:"; cat "$work/alice.err" "$work/bob.err"; tail -20 "$work/serve.log"; return 1
  }
  t1=$(date +%s.%N)
  for _ in $(seq 50); do [ -f "$work/inbox-$a-$b/file-$a-$b.bin" ] && break; sleep 0.1; done
  cmp "$work/file-$a-$b.bin" "$work/inbox-$a-$b/file-$a-$b.bin"
  local via after
  via="$(echo "$out" | sed -n 's/.*"via":"\([a-z]*\)".*/\1/p')"
  after="$(echo "$out" | sed -n 's/.*"direct_after_ms":\([0-9a-z]*\).*/\1/p')"
  printf '%-5s x %-5s  %-6s (expected %s; direct after %s ms)  16 MB in %.1f s, SHA-256 verified\n' \
    "$a" "$b" "$via" "$want" "$after" "$(echo "$t1 - $t0" | bc -l)"
  if [ "$want" = direct ] && { [ "$after" = null ] || [ "$after" -gt 2000 ]; }; then
    echo "no direct path within 2 s for $a x $b" >&2; return 1
  fi
  kill "$watcher" 2>/dev/null || true
  [ "$via" = "$want" ] || { echo "unexpected path for $a x $b" >&2; return 1; }
  if [ "$a" = upnp ]; then
    # The direct path came from a mapping the router granted bob's client.
    local granted
    granted="$(grep -ciE 'redirect|map' "$work/upnp-nA.log" || true)"
    echo "  miniupnpd on router A: $granted mapping lines, e.g. $(grep -iE 'redirect|map' "$work/upnp-nA.log" | head -1)"
    [ "$granted" -gt 0 ] || { echo "miniupnpd granted no mapping" >&2; cat "$work/upnp-nA.log" >&2; return 1; }
  fi
}

# switch: a cone x cone transfer loses UDP between the routers for a while, then gets it
# back; it must go direct, relay, direct without starting over.
switch_() {
  up cone cone
  bob_watching "$work/inbox-switch"
  local watcher=$watcher
  head -c 64000000 /dev/urandom > "$work/switch.bin"
  as hB alice send --to bob --via direct --json --limit-rate 4M "$work/switch.bin" > "$work/alice.out" 2> "$work/alice.err" &
  local sender=$!
  sleep "${SWITCH_BLOCK_AT:-4}"
  # Router A drops UDP to and from router B (the relay is TCP to the server: untouched).
  x nA nft add table ip cut
  x nA nft add chain ip cut block '{ type filter hook forward priority -10; }'
  x nA nft add rule ip cut block ip saddr "$PUB.2" meta l4proto udp drop
  x nA nft add rule ip cut block ip daddr "$PUB.2" meta l4proto udp drop
  echo "  UDP between the routers blocked at ${SWITCH_BLOCK_AT:-4} s"
  sleep "${SWITCH_BLOCKED_FOR:-6}"
  x nA nft delete table ip cut
  echo "  and allowed again ${SWITCH_BLOCKED_FOR:-6} s later"
  wait "$sender" || { echo "send failed in the path switch:"; cat "$work/alice.err" "$work/bob.err"; return 1; }
  for _ in $(seq 50); do [ -f "$work/inbox-switch/switch.bin" ] && break; sleep 0.1; done
  cmp "$work/switch.bin" "$work/inbox-switch/switch.bin"
  local out paths resent
  out="$(cat "$work/alice.out")"
  paths="$(echo "$out" | sed -n 's/.*"paths":\[\([^]]*\)\].*/\1/p' | tr -d '"')"
  resent="$(echo "$out" | sed -n 's/.*"resent_bytes":\([0-9]*\).*/\1/p')"
  echo "switch: paths $paths at $(echo "$out" | sed -n 's/.*"path_changes_ms":\[\([^]]*\)\].*/\1/p') ms; chunk bytes re-sent $resent; QUIC bytes lost and re-sent $(echo "$out" | sed -n 's/.*"quic_lost_bytes":\([0-9]*\).*/\1/p'); connections $(echo "$out" | sed -n 's/.*"connections":\([0-9]*\).*/\1/p'); 64 MB, SHA-256 verified"
  kill "$watcher" 2>/dev/null || true
  case "$paths" in
    direct,relay*,direct) ;;
    *) echo "expected direct, relay, direct; got $paths" >&2; return 1 ;;
  esac
  [ "$resent" -le $((2 * 1048576)) ] || { echo "re-sent $resent bytes (more than a chunk per switch)" >&2; return 1; }
}

command -v nft >/dev/null || { echo "nft missing" >&2; exit 1; }
failed=0
for c in $cases; do
  case "$c" in
    cone-cone) case_ cone cone direct || failed=1 ;;
    full-sym) case_ full sym direct || failed=1 ;;
    sym-sym) case_ sym sym relay || failed=1 ;;
    sym-upnp)
      if [ -x "${MINIUPNPD:-}" ]; then case_ upnp sym direct || failed=1
      else echo "sym-upnp: MINIUPNPD not set to the miniupnpd binary" >&2; failed=1; fi ;;
    switch) switch_ || failed=1 ;;
    *) echo "unknown case $c" >&2; failed=1 ;;
  esac
done
[ "$failed" = 0 ] && echo "NAT lab: ok"
exit "$failed"

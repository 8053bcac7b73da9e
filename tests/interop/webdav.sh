#!/usr/bin/env bash
# WebDAV with real clients against `ferry serve` (accounts on): litmus 0.13 (every suite:
# basic, copymove, props, locks, http; all 104 tests must pass), rclone's webdav backend
# (copy 200 MB and small files in folders, check, move, delete) and a cadaver script (put,
# lock, unlock, move, list, get, delete). With FERRY_TEST_S3_ENDPOINT (moto) litmus and
# rclone run again against a node keeping its bytes in S3.
# Needs litmus, rclone and cadaver (Debian packages; .ci/run installs them).
# Usage: webdav.sh [FERRY_BIN]
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
ferry="$(realpath "${1:-$here/../../target/debug/ferry}")"
work="$(mktemp -d)"
pids=""
trap 'kill $pids 2>/dev/null || true; rm -rf "$work"' EXIT

# start NAME [serve args…]: a server with users lit (admin) and alice; prints its URL.
start() {
  local name="$1"; shift
  mkdir -p "$work/$name"
  echo litmus-pw | "$ferry" user add lit --admin --password-stdin --data "$work/$name" >/dev/null 2>&1
  echo alice-pw | "$ferry" user add alice --password-stdin --data "$work/$name" >/dev/null 2>&1
  "$ferry" serve --listen 127.0.0.1:0 --data "$work/$name" "$@" > "$work/$name.banner" 2> "$work/$name.log" &
  pids="$pids $!"
  for _ in $(seq 100); do grep -q http:// "$work/$name.banner" 2>/dev/null && break; sleep 0.1; done
  grep -o 'http://[0-9.:]*' "$work/$name.banner" | head -1
}

# litmus URL: all five suites, every test passing (the counts are litmus 0.13's).
run_litmus() {
  local url="$1" out="$work/litmus.out"
  curl -sf -u lit:litmus-pw -X MKCOL "$url/dav/litmus/" -o /dev/null
  (cd "$work" && litmus "$url/dav/litmus/" lit litmus-pw) > "$out" 2>&1 || true
  local want="basic:16 copymove:13 props:30 locks:41 http:4" total=0
  for pair in $want; do
    local suite="${pair%%:*}" n="${pair##*:}"
    if ! grep -q "summary for \`$suite': of $n tests run: $n passed, 0 failed" "$out"; then
      echo "litmus $suite: not all $n passed" >&2
      grep -E "FAIL|summary" "$out" >&2 || cat "$out" >&2
      return 1
    fi
    total=$((total + n))
  done
  echo "litmus at $url: $total/104 passed ($(grep -c WARNING "$out") warnings)"
}

# rclone URL: a 200 MB file and small files in folders in, checked, moved, deleted.
run_rclone() {
  local url="$1" src="$work/rclone-src"
  export RCLONE_CONFIG=/dev/null
  mkdir -p "$src/sub/deeper"
  [ -f "$src/big.bin" ] || head -c 200000000 /dev/urandom > "$src/big.bin"
  for i in 1 2 3; do echo "small $i" > "$src/sub/s$i.txt"; echo "deep $i" > "$src/sub/deeper/d$i.txt"; done
  local remote=":webdav,url='$url/dav/~alice',user=alice,pass=$(rclone obscure alice-pw):"
  # Outputs are captured before grep -q reads them: grep -q stops at the first match, and
  # under pipefail the writer's SIGPIPE would fail the step.
  local out
  rclone copy "$src" "${remote}rc"
  out="$(rclone check "$src" "${remote}rc" 2>&1)"
  grep -q "0 differences found" <<<"$out"
  rclone moveto "${remote}rc/big.bin" "${remote}rc/moved.bin"
  out="$(rclone lsf "${remote}rc")"
  grep -qx moved.bin <<<"$out"
  ! grep -qx big.bin <<<"$out"
  rclone cat "${remote}rc/moved.bin" | cmp - "$src/big.bin"
  rclone delete "${remote}rc/sub"
  rclone rmdirs "${remote}rc"
  [ -z "$(rclone lsf -R "${remote}rc" 2>/dev/null | grep -v '^moved.bin$' || true)" ]
  rclone purge "${remote}rc"
  echo "rclone at $url: copy 200 MB + 6 small files, check (0 differences), move, cat, delete, purge: ok"
}

# cadaver URL: a scripted session.
run_cadaver() {
  local url="$1" d="$work/cadaver"
  mkdir -p "$d"
  printf 'hello from cadaver\n' > "$d/local.txt"
  printf 'machine 127.0.0.1\nlogin alice\npassword alice-pw\n' > "$d/.netrc"
  chmod 600 "$d/.netrc"
  printf '%s\n' "open $url/dav/~alice/" "mkcol cad" "put $d/local.txt cad/a.txt" "lock cad/a.txt" "unlock cad/a.txt" \
    "move cad/a.txt cad/b.txt" "ls cad" "get cad/b.txt $d/back.txt" "delete cad/b.txt" "rmcol cad" "quit" > "$d/script"
  (cd "$d" && HOME="$d" cadaver < "$d/script") > "$d/out" 2>&1
  cmp "$d/local.txt" "$d/back.txt"
  grep -q "b.txt" "$d/out"
  if grep -qiE "failed|error" "$d/out"; then cat "$d/out" >&2; return 1; fi
  [ "$(curl -s -o /dev/null -w '%{http_code}' -u alice:alice-pw "$url/dav/~alice/cad/")" = 404 ]
  echo "cadaver at $url: mkcol, put, lock, unlock, move, ls, get, delete, rmcol: ok"
}

url="$(start local)"
run_litmus "$url"
run_rclone "$url"
run_cadaver "$url"

if [ -n "${FERRY_TEST_S3_ENDPOINT:-}" ]; then
  s3_url="$(AWS_ENDPOINT_URL="$FERRY_TEST_S3_ENDPOINT" AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test \
    AWS_REGION=us-east-1 start s3 --blobs "s3://ferry-test/webdav-$$")"
  run_litmus "$s3_url"
  run_rclone "$s3_url"
fi
echo "webdav interop: ok"

#!/usr/bin/env bash
# Interop with real peers: tus-js-client 4.x (Node, incl. parallelUploads: 4), tuspy 1.1
# (with upload_checksum), curl and aria2c (ranges and resume) against `ferry serve`, and the
# served OpenAPI document checked by openapi-spec-validator.
# The tus-js-client run is repeated over HTTPS (`serve --tls-cert/--tls-key`, a throwaway CA
# made with openssl, trusted through NODE_EXTRA_CA_CERTS).
# Needs node/npm, python3, curl, aria2c and openssl (.ci/run installs them). Usage: run.sh [FERRY_BIN]
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
ferry="${1:-$here/../../target/debug/ferry}"
work="$(mktemp -d)"
tls_pid=""
s3_pid=""
trap 'kill "$server_pid" $tls_pid $s3_pid 2>/dev/null || true; rm -rf "$work"' EXIT

"$ferry" serve --no-auth --listen 127.0.0.1:0 --data "$work/data" > "$work/banner" 2> "$work/server.log" &
server_pid=$!
for _ in $(seq 100); do grep -q http:// "$work/banner" 2>/dev/null && break; sleep 0.1; done
url="$(grep -o 'http://[0-9.:]*' "$work/banner" | head -1)"
echo "ferry at $url"

# --- tus-js-client ---
(cd "$here" && npm ci --no-audit --no-fund --silent)
node "$here/tus_js_client.mjs" "$url"

# --- tus-js-client over HTTPS ---
(
  cd "$work"
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout ca.key -out ca.pem \
    -days 2 -subj "/CN=ferry interop CA" -addext basicConstraints=critical,CA:TRUE \
    -addext keyUsage=critical,keyCertSign 2>/dev/null
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout key.pem -out srv.csr \
    -subj "/CN=127.0.0.1" 2>/dev/null
  printf 'subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n' > ext
  openssl x509 -req -in srv.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out cert.pem -days 2 -extfile ext 2>/dev/null
)
"$ferry" serve --no-auth --listen 127.0.0.1:0 --data "$work/data-tls" --tls-cert "$work/cert.pem" \
  --tls-key "$work/key.pem" > "$work/banner-tls" 2> "$work/server-tls.log" &
tls_pid=$!
for _ in $(seq 100); do grep -q https:// "$work/banner-tls" 2>/dev/null && break; sleep 0.1; done
tls_url="$(grep -o 'https://[0-9.:]*' "$work/banner-tls" | head -1)"
echo "ferry over TLS at $tls_url"
NODE_EXTRA_CA_CERTS="$work/ca.pem" node "$here/tus_js_client.mjs" "$tls_url"

# --- tuspy ---
venv="$here/../../target/interop-venv"
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
"$venv/bin/pip" install -q 'tuspy==1.1.0' 'openapi-spec-validator==0.9.0'
"$venv/bin/python" "$here/tuspy_client.py" "$url"

# --- tus-js-client (parallel: concatenation) and tuspy against a node keeping its bytes in
# S3 (moto, when FERRY_TEST_S3_ENDPOINT names it; .ci/run does) ---
if [ -n "${FERRY_TEST_S3_ENDPOINT:-}" ]; then
  AWS_ENDPOINT_URL="$FERRY_TEST_S3_ENDPOINT" AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test AWS_REGION=us-east-1 \
    "$ferry" serve --no-auth --listen 127.0.0.1:0 --data "$work/data-s3" --blobs "s3://ferry-test/interop-$$" \
    > "$work/banner-s3" 2> "$work/server-s3.log" &
  s3_pid=$!
  for _ in $(seq 100); do grep -q http:// "$work/banner-s3" 2>/dev/null && break; sleep 0.1; done
  s3_url="$(grep -o 'http://[0-9.:]*' "$work/banner-s3" | head -1)"
  echo "ferry with S3 bytes at $s3_url"
  node "$here/tus_js_client.mjs" "$s3_url"
  "$venv/bin/python" "$here/tuspy_client.py" "$s3_url"
else
  echo "SKIPPED tus-js-client and tuspy against S3: FERRY_TEST_S3_ENDPOINT is not set"
fi

# --- the OpenAPI document validates against the OpenAPI 3.1 schema ---
curl -sf "$url/api/openapi.json" -o "$work/openapi.json"
"$venv/bin/openapi-spec-validator" "$work/openapi.json" && echo "ok   /api/openapi.json is a valid OpenAPI 3.1 document"

# --- curl and aria2c downloads with ranges and resume ---
head -c 30000000 /dev/urandom > "$work/dl.bin"
"$ferry" upload --json --server "$url" --dir dl "$work/dl.bin" > /dev/null
want="$(sha256sum < "$work/dl.bin" | cut -d' ' -f1)"
same() { [ "$(sha256sum < "$1" | cut -d' ' -f1)" = "$want" ] || { echo "FAIL: $2"; exit 1; }; echo "ok   $2"; }

curl -sf -r 1000-1999 "$url/files/dl/dl.bin" -o "$work/range.bin"
cmp "$work/range.bin" <(tail -c +1001 "$work/dl.bin" | head -c 1000) && echo "ok   curl single range"
head -c 12345678 "$work/dl.bin" > "$work/curl.bin"
curl -sf -C - "$url/files/dl/dl.bin" -o "$work/curl.bin"
same "$work/curl.bin" "curl -C - resumes a partial file"

aria2c -q -x 4 -s 4 -k 1M -d "$work" -o aria.bin "$url/files/dl/dl.bin"
same "$work/aria.bin" "aria2c -x 4 -s 4 segmented download"
rm -f "$work/aria.bin"
# Interrupt aria2c mid-download (slowed down), then resume with -c.
aria2c -q --max-download-limit=2M --auto-save-interval=1 -d "$work" -o aria2.bin "$url/files/dl/dl.bin" &
aria_pid=$!
sleep 3; kill -INT "$aria_pid"; wait "$aria_pid" || true
partial=$(stat -c %s "$work/aria2.bin" 2>/dev/null || echo 0)
[ -f "$work/aria2.bin.aria2" ] || { echo "FAIL: aria2c left no control file (partial $partial bytes)"; exit 1; }
aria2c -q -c -d "$work" -o aria2.bin "$url/files/dl/dl.bin"
same "$work/aria2.bin" "aria2c -c resumes an interrupted download"
echo "interop: all passed"

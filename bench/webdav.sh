#!/usr/bin/env bash
# WebDAV rows (issue 9), ferry vs Apache 2.4 mod_dav_fs (Debian apache2) in the same run:
#   V1: curl -T of one file (SIZE, default 1G) to /dav/, s (median of REPS);
#   V2: PROPFIND Depth: 1 of a folder of 10,000 small files, s (median of REPS).
# ferry runs with accounts off (Apache has no auth here either), release build, both trees
# on the same filesystem. ferry stages, fsyncs, hashes (SHA-256) and renames every PUT;
# Apache writes to a temp file and renames (no fsync).
#
# Usage: bench/webdav.sh     Environment: SIZE (1G), REPS (3), FILES (10000)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$here/.."
size="${SIZE:-1G}"
reps="${REPS:-3}"
files="${FILES:-10000}"
ferry="$root/target/release/ferry"
work=/var/tmp/ferry-webdav-bench
aport=54350

command -v apache2 >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq apache2 >/dev/null; }
(cd "$root" && cargo build --release -q)
rm -rf "$work" && mkdir -p "$work/apache/dav" "$work/apache/lock" "$work/apache/logs"
chown -R www-data "$work/apache"
srv_pid=""
trap 'kill $srv_pid 2>/dev/null || true; apache2 -f "$work/apache.conf" -k stop 2>/dev/null || true; rm -rf "$work"' EXIT

mods=/usr/lib/apache2/modules
cat > "$work/apache.conf" <<EOF
ServerRoot /etc/apache2
PidFile $work/apache/apache.pid
Listen 127.0.0.1:$aport
ServerName 127.0.0.1
User www-data
Group www-data
LoadModule mpm_event_module $mods/mod_mpm_event.so
LoadModule authz_core_module $mods/mod_authz_core.so
LoadModule dav_module $mods/mod_dav.so
LoadModule dav_fs_module $mods/mod_dav_fs.so
LoadModule alias_module $mods/mod_alias.so
ErrorLog $work/apache/logs/error.log
DAVLockDB $work/apache/lock/DAVLock
LimitRequestBody 0
Alias /dav $work/apache/dav
<Directory $work/apache/dav>
  Dav On
  Require all granted
</Directory>
EOF
apache2 -f "$work/apache.conf" -k start
for _ in $(seq 50); do curl -s -o /dev/null "http://127.0.0.1:$aport/dav/" && break; sleep 0.1; done

"$ferry" serve --no-auth --listen 127.0.0.1:0 --data "$work/ferry" > "$work/banner" 2> "$work/server.log" &
srv_pid=$!
for _ in $(seq 100); do grep -q http:// "$work/banner" 2>/dev/null && break; sleep 0.1; done
furl="$(grep -o 'http://[0-9.:]*' "$work/banner" | head -1)"
aurl="http://127.0.0.1:$aport"

head -c "$size" /dev/urandom > "$work/in.bin"
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
put_secs() { curl -sf -T "$work/in.bin" -o /dev/null -w '%{time_total}\n' "$1"; }
# Interleaved runs, a new name each time.
ft=(); at=()
for i in $(seq "$reps"); do
  ft+=("$(put_secs "$furl/dav/v1-$i.bin")")
  at+=("$(put_secs "$aurl/dav/v1-$i.bin")")
done
cmp "$work/in.bin" "$work/ferry/files/v1-1.bin"
cmp "$work/in.bin" "$work/apache/dav/v1-1.bin"
f1=$(printf '%s\n' "${ft[@]}" | median); a1=$(printf '%s\n' "${at[@]}" | median)

# V2: the same 10,000 files in both trees (written straight to disk).
mkdir -p "$work/ferry/files/many" "$work/apache/dav/many"
for i in $(seq "$files"); do printf 'file %s\n' "$i" > "$work/ferry/files/many/f$i.txt"; done
cp -r "$work/ferry/files/many/." "$work/apache/dav/many/"
chown -R www-data "$work/apache/dav/many"
find_secs() {
  curl -sf -X PROPFIND -H 'Depth: 1' -o "$work/propfind.out" -w '%{time_total}\n' "$1"
  local n; n=$(grep -o '<[A-Za-z]*:response[ >]' "$work/propfind.out" | wc -l)
  [ "$n" -eq $((files + 1)) ] || { echo "PROPFIND $1 listed $n responses, not $((files + 1))" >&2; exit 1; }
}
ft=(); at=()
for i in $(seq "$reps"); do
  ft+=("$(find_secs "$furl/dav/many/")")
  at+=("$(find_secs "$aurl/dav/many/")")
done
f2=$(printf '%s\n' "${ft[@]}" | median); a2=$(printf '%s\n' "${at[@]}" | median)

printf '%-4s %-58s %9s %9s %7s\n' row measure ferry apache ratio
printf '%-4s %-58s %9.2f %9.2f %7.2f\n' V1 "curl PUT $size to /dav/ (s, median of $reps)" "$f1" "$a1" "$(echo "$f1 / $a1" | bc -l)"
printf '%-4s %-58s %9.3f %9.3f %7.2f\n' V2 "PROPFIND Depth 1 of $files files (s, median of $reps)" "$f2" "$a2" "$(echo "$f2 / $a2" | bc -l)"

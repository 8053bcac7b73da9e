"""tuspy 1.1 against `ferry serve`: an upload in 1 MiB chunks with Upload-Checksum (sha1)
on every PATCH, downloaded back and compared. Usage: python tuspy_client.py http://127.0.0.1:PORT"""
import hashlib
import os
import sys
import tempfile
import urllib.request

from tusclient import client

server = sys.argv[1]
data = os.urandom(5 * 1024 * 1024 + 123)
with tempfile.NamedTemporaryFile(delete=False) as f:
    f.write(data)
    path = f.name

tus = client.TusClient(server + "/tus/")
uploader = tus.uploader(
    file_path=path,
    chunk_size=1024 * 1024,
    metadata={"filename": "tuspy.bin", "dir": "py"},
    upload_checksum=True,
)
uploader.upload()

with urllib.request.urlopen(server + "/files/py/tuspy.bin") as resp:
    got = resp.read()
if hashlib.sha256(got).hexdigest() != hashlib.sha256(data).hexdigest():
    sys.exit("tuspy.bin: SHA-256 differs after upload")
print(f"ok   tuspy with sha1 Upload-Checksum ({len(data)} bytes)")

# A wrong checksum is refused with 460 and nothing is stored.
req = urllib.request.Request(
    server + "/tus/",
    method="POST",
    headers={"Tus-Resumable": "1.0.0", "Upload-Length": "5"},
)
with urllib.request.urlopen(req) as resp:
    location = resp.headers["Location"]
bad = urllib.request.Request(
    server + location,
    data=b"hello",
    method="PATCH",
    headers={
        "Tus-Resumable": "1.0.0",
        "Upload-Offset": "0",
        "Content-Type": "application/offset+octet-stream",
        "Upload-Checksum": "sha1 " + "A" * 27 + "=",
    },
)
try:
    urllib.request.urlopen(bad)
    sys.exit("a wrong checksum was accepted")
except urllib.error.HTTPError as e:
    if e.code != 460:
        sys.exit(f"wrong checksum answered {e.code}, expected 460")
print("ok   wrong checksum refused with 460")

"""C1: many concurrent slow tus uploads against one server.

Usage: python3 slow_uploads.py HOST PORT COUNT BYTES_EACH SECONDS [PATH]
Each client creates an upload (POST PATH, default /tus/), then trickles its bytes in one
PATCH over SECONDS. Responses are read completely (Content-Length or chunked bodies, as
@tus/server sends), so both servers are measured alike.
Prints one line: errors turned_away(503) p50_create_ms p99_create_ms.
"""
import asyncio
import sys
import time

host, port, count, size, secs = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5])
path = sys.argv[6] if len(sys.argv) > 6 else "/tus/"


class Busy(Exception):
    """503 with Retry-After: turned away before any byte was accepted."""


async def response(r):
    """Status line and headers of one response; its body is read and dropped."""
    head = await r.readuntil(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    headers = {}
    for line in lines[1:]:
        if b": " in line:
            k, v = line.split(b": ", 1)
            headers[k.lower().decode()] = v.decode()
    if headers.get("transfer-encoding", "").lower() == "chunked":
        while True:
            n = int((await r.readuntil(b"\r\n")).split(b";")[0], 16)
            await r.readexactly(n + 2)
            if n == 0:
                break
    elif "content-length" in headers:
        await r.readexactly(int(headers["content-length"]))
    return lines[0], headers


async def one(latencies):
    r, w = await asyncio.open_connection(host, port, limit=1 << 16)
    t0 = time.monotonic()
    w.write(f"POST {path} HTTP/1.1\r\nHost: x\r\nTus-Resumable: 1.0.0\r\nUpload-Length: {size}\r\nContent-Length: 0\r\n\r\n".encode())
    await w.drain()
    status, headers = await response(r)
    if b" 503 " in status and "retry-after" in headers:
        w.close()
        raise Busy()
    if b" 201 " not in status:
        raise RuntimeError(status[:80])
    latencies.append(time.monotonic() - t0)
    loc = headers["location"]
    if "://" in loc:
        loc = "/" + loc.split("://", 1)[1].split("/", 1)[1]
    w.write(f"PATCH {loc} HTTP/1.1\r\nHost: x\r\nTus-Resumable: 1.0.0\r\nUpload-Offset: 0\r\n"
            f"Content-Type: application/offset+octet-stream\r\nContent-Length: {size}\r\n\r\n".encode())
    steps = 20
    piece = b"x" * (size // steps)
    for _ in range(steps):
        await asyncio.sleep(secs / steps)
        w.write(piece)
        await w.drain()
    w.write(b"x" * (size - len(piece) * steps))
    await w.drain()
    status, _ = await response(r)
    w.close()
    if b" 204 " not in status:
        raise RuntimeError(status[:80])


async def main():
    latencies = []
    results = await asyncio.gather(*(one(latencies) for _ in range(count)), return_exceptions=True)
    busy = sum(isinstance(r, Busy) for r in results)
    errors = [r for r in results if isinstance(r, BaseException) and not isinstance(r, Busy)]
    latencies.sort()
    pct = lambda q: latencies[min(len(latencies) - 1, int(q * len(latencies)))] * 1000 if latencies else float("nan")
    print(f"{len(errors)} {busy} {pct(0.5):.0f} {pct(0.99):.0f}")
    for e in errors[:3]:
        print("error:", repr(e), file=sys.stderr)


asyncio.run(main())

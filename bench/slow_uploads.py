"""C1: many concurrent slow tus uploads against one server; reports errors.

Usage: python3 slow_uploads.py HOST PORT COUNT BYTES_EACH SECONDS
Each client creates an upload, then trickles its bytes in one PATCH over SECONDS.
"""
import asyncio
import sys

host, port, count, size, secs = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5])


async def one(i):
    r, w = await asyncio.open_connection(host, port)
    w.write(f"POST /tus/ HTTP/1.1\r\nHost: x\r\nTus-Resumable: 1.0.0\r\nUpload-Length: {size}\r\nContent-Length: 0\r\n\r\n".encode())
    await w.drain()
    head = await r.readuntil(b"\r\n\r\n")
    if b" 201 " not in head.split(b"\r\n")[0]:
        raise RuntimeError(head[:80])
    loc = [l.split(b": ", 1)[1] for l in head.split(b"\r\n") if l.lower().startswith(b"location:")][0].decode()
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
    head = await r.readuntil(b"\r\n\r\n")
    w.close()
    if b" 204 " not in head.split(b"\r\n")[0]:
        raise RuntimeError(head[:80])


async def main():
    results = await asyncio.gather(*(one(i) for i in range(count)), return_exceptions=True)
    errors = [r for r in results if isinstance(r, BaseException)]
    print(len(errors))
    for e in errors[:3]:
        print("error:", repr(e), file=sys.stderr)


asyncio.run(main())

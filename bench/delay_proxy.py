"""A TCP relay that delays every piece of data by DELAY_MS in each direction (the kernel
here has no netem). Usage: python3 delay_proxy.py LISTEN_PORT UPSTREAM_HOST UPSTREAM_PORT DELAY_MS"""
import asyncio
import sys

listen, host, port, delay = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), float(sys.argv[4]) / 1000


async def pipe(reader, writer):
    loop = asyncio.get_running_loop()
    queue = asyncio.Queue()

    async def deliver():
        while True:
            due, data = await queue.get()
            wait = due - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
            if data is None:
                break
            writer.write(data)
            await writer.drain()
        try:
            writer.write_eof()
        except OSError:
            pass

    task = asyncio.create_task(deliver())
    try:
        while True:
            data = await reader.read(256 * 1024)
            if not data:
                break
            await queue.put((loop.time() + delay, data))
    except OSError:
        pass
    await queue.put((loop.time() + delay, None))
    try:
        await task
    except OSError:
        pass


async def handle(cr, cw):
    try:
        sr, sw = await asyncio.open_connection(host, port)
    except OSError:
        cw.close()
        return
    await asyncio.gather(pipe(cr, sw), pipe(sr, cw), return_exceptions=True)
    cw.close()
    sw.close()


async def main():
    server = await asyncio.start_server(handle, "0.0.0.0", listen)
    async with server:
        await server.serve_forever()


asyncio.run(main())

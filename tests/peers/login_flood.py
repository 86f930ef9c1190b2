"""
A login flood, as a process of its own (so that it does not take the
measuring test's interpreter): N connections at once, each sending the
same upgrade request over and over for S seconds from its source address,
each answer's status counted.  Prints the counts as JSON.

    python login_flood.py PORT SECONDS REQUEST_FILE SOURCE [SOURCE...]

One connection per SOURCE (repeat an address for several).
"""

from __future__ import annotations

import asyncio
import collections
import json
import sys
import time


async def one(port: int, request: bytes, source: str, until: float, counts: collections.Counter[int]) -> None:
    while time.monotonic() < until:
        status = 0
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection("127.0.0.1", port, local_addr=(source, 0)), 5
            )
            try:
                writer.write(request)
                line = await asyncio.wait_for(reader.readline(), 5)
                status = int(line.split(b" ", 2)[1]) if line else 0
            finally:
                writer.close()
        except (TimeoutError, OSError, ValueError, IndexError):
            status = 0
        counts[status] += 1


async def main() -> None:
    port, seconds, request_file, *sources = sys.argv[1:]
    request = open(request_file, "rb").read()
    until = time.monotonic() + float(seconds)
    counts: collections.Counter[int] = collections.Counter()
    await asyncio.gather(*(one(int(port), request, s, until, counts) for s in sources))
    print(json.dumps({str(k): v for k, v in counts.items()}))


if __name__ == "__main__":
    asyncio.run(main())

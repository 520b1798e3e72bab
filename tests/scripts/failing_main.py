"""A script that raises when another process imports it as the main module (the forkserver, or a
worker), as one that reads its command line at module level would; run, it starts a pool, and
prints the error that the pool's start raised, then exits 3.

Usage: python failing_main.py  (with the tests directory on PYTHONPATH)
"""

import sys

import anyio

import procpool

if __name__ != "__main__":
    raise ValueError("failing_main.py runs only as a script")


async def main() -> None:
    async with procpool.Pool(1):
        pass


if __name__ == "__main__":
    try:
        anyio.run(main)
    except RuntimeError as exc:
        print(exc)
        sys.exit(3)

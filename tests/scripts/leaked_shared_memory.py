"""A script whose pool's worker creates a multiprocessing shared memory segment and leaves it:
multiprocessing's resource tracker, which the pool's first worker start starts, removes it once
the script has exited.

Usage: python leaked_shared_memory.py  (with the tests directory on PYTHONPATH)
Prints the segment's name.
"""

import anyio

import procpool
import workfns


async def main() -> None:
    async with procpool.Pool(1) as pool:
        print(await pool.run(workfns.leave_shared_memory), flush=True)


if __name__ == "__main__":
    anyio.run(main)

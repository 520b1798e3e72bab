"""A script whose import takes a second (as heavy imports would), which creates its pool in a
thread that ends soon after, while the forkserver may still import the script, and opens it in the
main thread.

Usage: python pool_from_a_thread.py  (with the tests directory on PYTHONPATH)
Prints the pool's answer to ``square(7)``.
"""

import threading
import time

import anyio

import procpool
import workfns

time.sleep(1.0)  # stands for the main module's heavy imports, which the forkserver repeats
created: list[procpool.Pool] = []


def create_then_end(ready: threading.Event) -> None:
    created.append(procpool.Pool(1))
    ready.set()
    time.sleep(0.3)  # ends while the forkserver, had it started it, would import this script


async def main() -> None:
    ready = threading.Event()
    thread = threading.Thread(target=create_then_end, args=(ready,))
    thread.start()
    ready.wait()
    async with created[0] as pool:
        print(await pool.run(workfns.square, 7), flush=True)
    thread.join()


if __name__ == "__main__":
    anyio.run(main)

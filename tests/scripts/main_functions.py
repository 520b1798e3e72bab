"""Run functions and lambdas defined in ``__main__`` through a pool; print their results.

Usage: python main_functions.py START_METHOD
"""

from __future__ import annotations

import sys

import anyio

import procpool

OFFSET = 100


def shift(x: int) -> int:
    return x + OFFSET


async def shift_later(x: int) -> int:
    return shift(x)


async def main(start_method: str) -> None:
    async with procpool.Pool(2, start_method=start_method) as pool:
        print("function", await pool.run(shift, 1))
        print("lambda", await pool.run(lambda x: x * 2, 21))
        print("async function", await pool.run(shift_later, 2))
        print("map function", [y async for y in pool.map(shift, range(3))])
        print("map lambda", [y async for y in pool.map(lambda x: -x, range(3))])


if __name__ == "__main__":
    anyio.run(main, sys.argv[1])

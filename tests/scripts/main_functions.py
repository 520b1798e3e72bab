"""The main script's functions, classes and globals through a pool and through the stdlib's
`ProcessPoolExecutor`, side by side; prints one JSON object of what each gave.

Usage: python main_functions.py START_METHOD BACKEND [DASK_SCHEDULER_ADDRESS]
With an address, the pool is a `procpool.DaskPool` on that cluster, whose workers do not import
this script, and the stdlib is left out.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import sys
from concurrent.futures import ProcessPoolExecutor
from typing import Any

import anyio

import procpool

MODEL: dict[str, int] | None = None  # set by the initializer, in each worker


def load_model(size: int) -> None:
    global MODEL
    MODEL = {"size": size, "weight": size * 2}


def predict(key: str) -> int:
    assert MODEL is not None, "the initializer did not run in this module"
    return MODEL[key]


def raise_quota(limit: int) -> None:
    raise ValueError(f"over the quota of {limit}")  # the line a traceback must show


@dataclasses.dataclass
class Point:
    x: int
    y: int

    def norm1(self) -> int:
        return abs(self.x) + abs(self.y)


def is_point(value: object) -> bool:
    return isinstance(value, Point)


def logged(fn: Any) -> Any:
    @functools.wraps(fn)
    def wrapper(*args: Any) -> Any:
        return ("logged", fn(*args))

    return wrapper


@logged
def double(x: int) -> int:
    return 2 * x


async def shift_later(x: int) -> int:
    return double(x)[1] + 1


async def through_pool(start_method: str) -> dict[str, Any]:
    async with procpool.Pool(2, start_method=start_method, initializer=load_model, initargs=(20,)) as pool:
        out = await through(pool)
        out["predict"] = await pool.run(predict, "weight")
        out["map"] = [y async for y in pool.map(predict, ["size", "weight"])]
        out["partial"] = await pool.run(functools.partial(predict, "size"))
    return out


async def through_dask(address: str) -> dict[str, Any]:
    async with procpool.DaskPool(address) as pool:
        return await through(pool)


async def through(pool: procpool.Pool | procpool.DaskPool) -> dict[str, Any]:
    """What holds whether or not the workers import this script."""
    scale = 7
    out: dict[str, Any] = {}
    try:
        await pool.run(raise_quota, 3)
    except ValueError as exc:
        out["traceback"] = str(exc.__cause__)
    out["point_is_point"] = await pool.run(is_point, Point(1, 2))
    out["point_back"] = (await pool.run(Point, 3, -4)).norm1()
    out["method"] = await pool.run(Point.norm1, Point(-5, 6))
    out["decorated"] = list(await pool.run(double, 4))
    out["lambda"] = await pool.run(lambda x: x + 1, 1)
    out["closure"] = await pool.run(lambda x: x * scale, 2)
    out["guarded"] = await pool.run(guarded, 5)
    out["async"] = await pool.run(shift_later, 1)
    out["map lambda"] = [y async for y in pool.map(lambda x: -x, range(3))]
    return out


def through_stdlib(start_method: str) -> dict[str, Any]:
    import multiprocessing

    context = multiprocessing.get_context(start_method)
    with ProcessPoolExecutor(2, mp_context=context, initializer=load_model, initargs=(20,)) as executor:
        out: dict[str, Any] = {"predict": executor.submit(predict, "weight").result()}
        out["point_is_point"] = executor.submit(is_point, Point(1, 2)).result()
        out["map"] = list(executor.map(predict, ["size", "weight"]))
    return out


if __name__ == "__main__":

    def guarded(x: int) -> int:  # not seen by a worker's import of this script: travels by value
        return -x

    method, backend, *dask = sys.argv[1:]
    if dask:
        print(json.dumps({"pool": anyio.run(through_dask, dask[0], backend=backend)}))
    else:
        results = {"pool": anyio.run(through_pool, method, backend=backend), "stdlib": through_stdlib(method)}
        print(json.dumps(results))

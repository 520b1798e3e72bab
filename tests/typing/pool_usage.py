"""Type-checked by tests/test_typing.py: what mypy must infer for procpool's API."""

from __future__ import annotations

from typing import assert_type

import procpool


def parse(text: str, *, strict: bool = False) -> int:
    return len(text)


async def fetch(url: str) -> bytes:
    return url.encode()


async def usage(pool: procpool.Pool) -> None:
    assert_type(await pool.run(parse, "x"), int)
    assert_type(await pool.run(parse, "x", strict=True), int)
    assert_type(await pool.run(fetch, "u"), bytes)
    assert_type(pool.submit(parse, "x"), procpool.Task[int])
    assert_type(await pool.submit(fetch, "u"), bytes)
    assert_type(pool.map(parse, ["a"]), procpool.MapIterator[int])
    assert_type(pool.map(fetch, ["a"]), procpool.MapIterator[bytes])
    async for n in pool.map(parse, ["a"]):
        assert_type(n, int)
    assert_type(await pool.options(kill_on_cancel=False).run(parse, "x"), int)


async def opened() -> None:
    assert_type(await procpool.Pool(2).open(), procpool.Pool)
    async with procpool.Pool(2) as pool:
        assert_type(pool, procpool.Pool)

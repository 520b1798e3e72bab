"""Run a task whose outcome raises SystemExit or KeyboardInterrupt when the parent unpickles it,
among other tasks; print "ok" if it failed that task alone.

Usage: python unpickling_outcome.py BACKEND KIND OUTCOME  (with the tests directory on PYTHONPATH)
    BACKEND: asyncio, uvloop or trio; KIND: SystemExit or KeyboardInterrupt;
    OUTCOME: result (a returned object) or exception (a raised one).

A process of its own: a SystemExit or KeyboardInterrupt that escaped into the event loop would end
or wedge this script, which the test reports, rather than the test session.
"""

from __future__ import annotations

import sys

import anyio

import lifecycle_fns
import procpool
import workfns


async def main(kind: str, outcome: str) -> None:
    explosive = lifecycle_fns.return_explosive if outcome == "result" else lifecycle_fns.raise_explosive
    async with procpool.Pool(2) as pool:
        for i in range(20):  # the pool learns tasks are short: it sends them ahead, results come in batches
            await pool.run(workfns.square, i)
        slow = pool.submit(workfns.sleep_and_return, 0.5, "slow")
        before = [pool.submit(workfns.square, i) for i in range(5)]
        bad = pool.submit(explosive, kind)
        after = [pool.submit(workfns.square, i) for i in range(5, 10)]
        with anyio.fail_after(20):
            try:
                await bad
            except BaseException as exc:  # what arrives is what is checked
                error: BaseException | None = exc
            else:
                error = None
            if outcome == "result":
                # docs/errors.md: a result that cannot be unpickled fails its own task, and no other
                assert isinstance(error, procpool.SerializationError), repr(error)
                assert "unpickl" in str(error), str(error)
            else:
                # docs/errors.md: an exception that cannot be rebuilt arrives as RemoteError
                assert isinstance(error, (procpool.RemoteError, procpool.SerializationError)), repr(error)
                assert "ExplodingError" in f"{error} {getattr(error, 'type_name', '')}", repr(error)
            assert [await task for task in before + after] == [i * i for i in range(10)]
            assert await slow == "slow"
            assert await pool.run(workfns.square, 12) == 144
        assert pool.stats().crashed == 0, pool.stats()
    print("ok")


if __name__ == "__main__":
    backend, kind, outcome = sys.argv[1:]
    options = {"use_uvloop": True} if backend == "uvloop" else {}
    anyio.run(main, kind, outcome, backend="trio" if backend == "trio" else "asyncio", backend_options=options)

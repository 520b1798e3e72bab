"""A trio TCP server that hands per-message CPU work to a pool and keeps serving.

procpool runs on trio as it does on asyncio (through anyio). The protocol is one line per message:

- ``PING`` -> ``PONG``: must stay fast however busy the workers are.
- ``PRIMES n`` -> ``PRIMES n <count>``: how many primes are below n, by trial division in pure
  Python (n = 300000 takes about a fifth of a second), run in a procpool worker.
- A count that runs past ``--timeout`` is cancelled with ``trio.move_on_after`` (its worker is
  killed and replaced, as trio's cancellation promises) and the client gets ``ERROR timeout``.

``python examples/trio_example.py --port 7778`` serves until Ctrl-C. ``--demo`` starts the server
on a free port, runs a few clients against it, prints what they saw and exits (status 0 when every
answer was right).
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import statistics
import time
from collections.abc import Sequence

import trio

import procpool

MAX_LIMIT = 10**8
# Known answers (pi(n)), to check the demo's results.
PRIME_COUNTS = {10_000: 1229, 100_000: 9592, 200_000: 17984, 300_000: 25997}


def count_primes(limit: int) -> int:
    """CPU-bound: the number of primes below ``limit``, by trial division (slow on purpose)."""
    count = 1 if limit > 2 else 0
    for candidate in range(3, limit, 2):
        divisor = 3
        while divisor * divisor <= candidate:
            if candidate % divisor == 0:
                break
            divisor += 2
        else:
            count += 1
    return count


class LineStream:
    """Lines over a trio stream (trio has no ``readline``)."""

    def __init__(self, stream: trio.abc.Stream) -> None:
        self.stream = stream
        self._buffer = bytearray()

    async def read_line(self) -> str | None:
        """The next line without its newline, or None at end of stream."""
        while (end := self._buffer.find(b"\n")) < 0:
            data = await self.stream.receive_some(4096)
            if not data:
                return None
            self._buffer += data
        line = self._buffer[:end].decode(errors="replace")
        del self._buffer[: end + 1]
        return line

    async def send_line(self, line: str) -> None:
        await self.stream.send_all(f"{line}\n".encode())


class PrimeServer:
    """Serves the protocol above; the counting runs in ``pool``."""

    def __init__(self, pool: procpool.Pool, time_limit: float) -> None:
        self.pool = pool
        self.time_limit = time_limit

    async def answer(self, line: str) -> str:
        """The reply to one message."""
        command, _, argument = line.strip().partition(" ")
        if command == "PING":
            return "PONG"
        if command == "PRIMES":
            if not argument.isdigit() or int(argument) > MAX_LIMIT:
                return f"ERROR the limit must be a whole number up to {MAX_LIMIT}"
            limit = int(argument)
            with trio.move_on_after(self.time_limit):  # cancelling the call kills the worker running it
                return f"PRIMES {limit} {await self.pool.run(count_primes, limit)}"
            return "ERROR timeout"
        return "ERROR unknown command"

    async def handle(self, stream: trio.SocketStream) -> None:
        """One client's connection: answer each line, concurrently with every other client."""
        lines = LineStream(stream)
        async with stream:
            try:
                while (line := await lines.read_line()) is not None:
                    await lines.send_line(await self.answer(line))
            except trio.BrokenResourceError:
                pass  # the client went away


# -- the demo: a server and a few clients in one process ------------------------------------------


async def counting_client(port: int, limits: Sequence[int], replies: list[str]) -> None:
    """A client that asks for counts one after the other, appending the replies to ``replies``."""
    async with await trio.open_tcp_stream("127.0.0.1", port) as stream:
        lines = LineStream(stream)
        for limit in limits:
            await lines.send_line(f"PRIMES {limit}")
            replies.append(await lines.read_line() or "")


async def pinging_client(port: int, done: trio.Event, times: list[float]) -> None:
    """A client that PINGs every 10 ms until ``done`` is set, recording round-trip times (seconds)."""
    async with await trio.open_tcp_stream("127.0.0.1", port) as stream:
        lines = LineStream(stream)
        while not done.is_set():
            started = time.perf_counter()
            await lines.send_line("PING")
            if await lines.read_line() != "PONG":
                raise RuntimeError("the server did not answer PONG")
            times.append(time.perf_counter() - started)
            await trio.sleep(0.01)


async def demo(workers: int | None, time_limit: float) -> bool:
    """Serve on a free port, run clients against it, print what they saw; True if all went right."""
    work = [[100_000, 300_000], [300_000, 10_000], [200_000, 300_000]]
    replies: list[list[str]] = [[] for _ in work]
    ping_times: list[float] = []
    async with procpool.Pool(workers) as pool, trio.open_nursery() as nursery:
        server = PrimeServer(pool, time_limit)
        listeners = await nursery.start(functools.partial(trio.serve_tcp, host="127.0.0.1"), server.handle, 0)
        port = listeners[0].socket.getsockname()[1]
        done = trio.Event()
        nursery.start_soon(pinging_client, port, done, ping_times)
        started = time.perf_counter()
        async with trio.open_nursery() as clients:
            for limits, answers in zip(work, replies, strict=True):
                clients.start_soon(counting_client, port, limits, answers)
        elapsed = time.perf_counter() - started
        done.set()
        timeout_reply = await PrimeServer(pool, 0.05).answer(f"PRIMES {MAX_LIMIT}")
        nursery.cancel_scope.cancel()  # stop serving

    expected = [[f"PRIMES {limit} {PRIME_COUNTS[limit]}" for limit in limits] for limits in work]
    print(f"{len(work)} clients ran {sum(map(len, work))} counts in {elapsed:.2f} s on {pool.workers} workers")
    for client, answers in enumerate(replies, 1):
        print(f"  client {client}: {'; '.join(answers)}")
    print(
        f"meanwhile another client got {len(ping_times)} PONGs: median {statistics.median(ping_times) * 1000:.1f} ms, "
        f"worst {max(ping_times) * 1000:.1f} ms"
    )
    print(f"a count past its time limit: {timeout_reply}")
    correct = replies == expected and timeout_reply == "ERROR timeout"
    print("all answers right" if correct else "WRONG answers")
    return correct


async def serve(port: int, workers: int | None, time_limit: float) -> None:
    """Serve on 127.0.0.1 until cancelled (Ctrl-C)."""
    async with procpool.Pool(workers) as pool:
        print(f"serving on 127.0.0.1:{port}; Ctrl-C to stop")
        await trio.serve_tcp(PrimeServer(pool, time_limit).handle, port, host="127.0.0.1")


def main(argv: Sequence[str] | None = None) -> int:
    """Run the demo or the server; returns the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0] if __doc__ else None)
    parser.add_argument("--demo", action="store_true", help="start, run a few clients against the server, exit")
    parser.add_argument("--port", type=int, default=7778)
    parser.add_argument("--workers", type=int, default=None, help="worker processes (default: one per CPU)")
    parser.add_argument("--timeout", type=float, default=10.0, help="seconds a count may take")
    args = parser.parse_args(argv)
    if args.demo:
        return 0 if trio.run(demo, args.workers, args.timeout) else 1
    with contextlib.suppress(KeyboardInterrupt):
        trio.run(serve, args.port, args.workers, args.timeout)
    return 0


if __name__ == "__main__":  # required: worker processes re-import this module
    raise SystemExit(main())

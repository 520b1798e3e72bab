"""An asyncio TCP game server that hands per-message CPU work to a pool and keeps serving.

The protocol is one line per message:

- ``PING`` -> ``PONG``: what every connected player sends all the time; it must stay fast.
- ``SOLVE n`` -> ``SOLVED n <count>``: the number of ways to put n queens on an n x n board, none
  attacking another (a pure-Python search: 12 takes about a fifth of a second). It runs in a
  procpool worker, so the event loop goes on answering everyone's PINGs meanwhile. A search
  that runs past ``--solve-timeout`` is cancelled (its worker is killed and replaced) and the
  player gets ``ERROR timeout``.

``python examples/game_server.py --port 7777`` serves until Ctrl-C (try ``nc 127.0.0.1 7777``).
``python examples/game_server.py --demo`` starts the server on a free port, connects a few
players that ask for searches and one that PINGs throughout, prints what they saw, and exits
(status 0 when every answer was right).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import statistics
import time
from collections.abc import Sequence

import procpool

MAX_BOARD = 14
# Known answers (OEIS A000170), to check the demo's results.
SOLUTIONS = {1: 1, 2: 0, 3: 0, 4: 2, 5: 10, 6: 4, 7: 40, 8: 92, 9: 352, 10: 724, 11: 2680, 12: 14200, 13: 73712}


def count_queens(n: int) -> int:
    """CPU-bound: count the placements of n non-attacking queens (bitmask backtracking)."""
    full = (1 << n) - 1

    def place(columns: int, diagonals: int, anti_diagonals: int) -> int:
        if columns == full:
            return 1
        count = 0
        free = full & ~(columns | diagonals | anti_diagonals)
        while free:
            bit = free & -free
            free ^= bit
            count += place(columns | bit, ((diagonals | bit) << 1) & full, (anti_diagonals | bit) >> 1)
        return count

    return place(0, 0, 0)


class GameServer:
    """Serves the protocol above; the searches run in ``pool``."""

    def __init__(self, pool: procpool.Pool, solve_timeout: float) -> None:
        self.pool = pool
        self.solve_timeout = solve_timeout

    async def answer(self, line: str) -> str:
        """The reply to one message."""
        command, _, argument = line.strip().partition(" ")
        if command == "PING":
            return "PONG"
        if command == "SOLVE":
            if not argument.isdigit() or not 1 <= int(argument) <= MAX_BOARD:
                return f"ERROR board size must be 1 to {MAX_BOARD}"
            n = int(argument)
            try:
                async with asyncio.timeout(self.solve_timeout):  # a timeout kills the worker running it
                    return f"SOLVED {n} {await self.pool.run(count_queens, n)}"
            except TimeoutError:
                return "ERROR timeout"
        return "ERROR unknown command"

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """One player's connection: answer each line, concurrently with every other player."""
        try:
            while line := await reader.readline():
                writer.write((await self.answer(line.decode(errors="replace")) + "\n").encode())
                await writer.drain()
        except ConnectionError:
            pass  # the player went away
        finally:
            writer.close()


# -- the demo: a server and a few players in one process ------------------------------------------


async def solver(port: int, boards: Sequence[int]) -> list[str]:
    """A player that asks for searches, one after the other; returns the replies."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    replies = []
    for n in boards:
        writer.write(f"SOLVE {n}\n".encode())
        replies.append((await reader.readline()).decode().strip())
    writer.close()
    await writer.wait_closed()
    return replies


async def pinger(port: int, stop: asyncio.Event) -> list[float]:
    """A player that PINGs every 10 ms until ``stop`` is set; returns the round-trip times (seconds)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    times = []
    while not stop.is_set():
        started = time.perf_counter()
        writer.write(b"PING\n")
        if (await reader.readline()).strip() != b"PONG":
            raise RuntimeError("the server did not answer PONG")
        times.append(time.perf_counter() - started)
        await asyncio.sleep(0.01)
    writer.close()
    await writer.wait_closed()
    return times


async def demo(workers: int | None, solve_timeout: float) -> bool:
    """Serve on a free port, play against it, print what the players saw; True if all went right."""
    async with procpool.Pool(workers) as pool:
        game = GameServer(pool, solve_timeout)
        server = await asyncio.start_server(game.handle, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        async with server:
            stop = asyncio.Event()
            pings = asyncio.create_task(pinger(port, stop))
            boards = [[10, 12], [12, 8], [11, 12], [9, 11]]
            started = time.perf_counter()
            replies = await asyncio.gather(*(solver(port, b) for b in boards))
            elapsed = time.perf_counter() - started
            stop.set()
            ping_times = await pings
            timeout_reply = (await GameServer(pool, 0.05).answer(f"SOLVE {MAX_BOARD}")).strip()

    expected = [[f"SOLVED {n} {SOLUTIONS[n]}" for n in b] for b in boards]
    print(f"{len(boards)} players ran {sum(map(len, boards))} searches in {elapsed:.2f} s on {pool.workers} workers")
    for player, answers in enumerate(replies, 1):
        print(f"  player {player}: {'; '.join(answers)}")
    print(
        f"meanwhile another player got {len(ping_times)} PONGs: median {statistics.median(ping_times) * 1000:.1f} ms, "
        f"worst {max(ping_times) * 1000:.1f} ms"
    )
    print(f"a search past its time limit: {timeout_reply}")
    correct = replies == expected and timeout_reply == "ERROR timeout"
    print("all answers right" if correct else "WRONG answers")
    return correct


async def serve(port: int, workers: int | None, solve_timeout: float) -> None:
    """Serve on 127.0.0.1 until cancelled (Ctrl-C)."""
    async with procpool.Pool(workers) as pool:
        server = await asyncio.start_server(GameServer(pool, solve_timeout).handle, "127.0.0.1", port)
        print(f"serving on 127.0.0.1:{server.sockets[0].getsockname()[1]}; Ctrl-C to stop")
        async with server:
            await server.serve_forever()


def main(argv: Sequence[str] | None = None) -> int:
    """Run the demo or the server; returns the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0] if __doc__ else None)
    parser.add_argument("--demo", action="store_true", help="start, play a few games against the server, exit")
    parser.add_argument("--port", type=int, default=7777)
    parser.add_argument("--workers", type=int, default=None, help="worker processes (default: one per CPU)")
    parser.add_argument("--solve-timeout", type=float, default=10.0, help="seconds a search may take")
    args = parser.parse_args(argv)
    if args.demo:
        return 0 if asyncio.run(demo(args.workers, args.solve_timeout)) else 1
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(args.port, args.workers, args.solve_timeout))
    return 0


if __name__ == "__main__":  # required: worker processes re-import this module
    raise SystemExit(main())

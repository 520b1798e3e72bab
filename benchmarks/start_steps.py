"""What each step of a pool's first start costs, each in fresh interpreters, as docs/tuning.md
reports it; the stdlib's pool started the same way beside it.

Usage: ``python -m benchmarks.start_steps [--repeats N] [--out FILE]``: prints a Markdown table of
medians (min-max) and writes the figures as JSON (default: benchmarks/results/start_steps.json).
Bytecode is compiled first, as an installed wheel's is.
"""

from __future__ import annotations

import argparse
import compileall
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import procpool

from . import machine

RESULTS = Path(__file__).resolve().parent / "results" / "start_steps.json"

# Each step's code runs in a fresh interpreter, timed by itself from `BEGIN` to `END` (milliseconds
# printed), or, for a whole interpreter, from outside.
BEGIN = "import time; _begin = time.perf_counter()\n"
END = "\nprint(1e3 * (time.perf_counter() - _begin))"
_POOL = """
import asyncio, os, time

def probe(delay):
    time.sleep(delay)
    return os.getpid()

async def warm(call, workers=2):
    pids = set()
    while len(pids) < workers:
        pids.update(await asyncio.gather(*(call(probe, 0.002) for _ in range(workers))))
"""
# The first pool is timed from before the imports (the `import` lines run for the first time), the
# second from its creation; each until both workers have answered.
_TWO_POOLS = """
async def warm_pool():
{open_pool}
        await warm({call})
        return time.perf_counter()

async def pools():
    begin = time.perf_counter()
    first = await warm_pool() - begin
    begin = time.perf_counter()
    print(1e3 * first, 1e3 * (await warm_pool() - begin))

if __name__ == "__main__":
    asyncio.run(pools())
"""
PROCPOOL_POOLS = _TWO_POOLS.format(
    open_pool="    import procpool\n    async with procpool.Pool(2) as pool:", call="pool.run"
)
STDLIB_POOLS = _TWO_POOLS.format(
    open_pool="    import multiprocessing\n    from concurrent.futures import ProcessPoolExecutor\n"
    "    loop = asyncio.get_running_loop()\n"
    '    with ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("forkserver")) as executor:',
    call="lambda fn, *args: loop.run_in_executor(executor, fn, *args)",
)
# (step, what it is, its code): ``outside:CODE`` times a whole interpreter running CODE.
STEPS: tuple[tuple[str, str, str], ...] = (
    ("interpreter", "an interpreter starts and exits (`python -c pass`)", "outside:pass"),
    (
        "forkserver interpreter",
        "the stdlib's forkserver up to its loop, before it preloads anything (`python -c 'from "
        "multiprocessing.forkserver import main'`)",
        "outside:from multiprocessing.forkserver import main",
    ),
    ("import procpool", "`import procpool`", BEGIN + "import procpool" + END),
    (
        "the pool class",
        "`procpool.Pool`, first use: the facade and multiprocessing (asyncio already imported; the engine "
        "and anyio come with `Pool(...)`, beside the forkserver's start)",
        "import asyncio\n" + BEGIN + "import procpool; procpool.Pool" + END,
    ),
    (
        "the child side",
        "what the forkserver preloads for the workers (`procpool._child`: cloudpickle, the wire format)",
        "from multiprocessing.forkserver import main\n" + BEGIN + "import procpool._child" + END,
    ),
)
POOLS = (
    ("procpool", "`async with procpool.Pool(2)` until both workers answered", PROCPOOL_POOLS),
    ("stdlib PPE, forkserver", "`ProcessPoolExecutor(2, forkserver)` until both workers answered", STDLIB_POOLS),
)


def _outside(code: str) -> float:
    begin = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], check=True)
    return 1e3 * (time.perf_counter() - begin)


def _inside(code: str, script: Path) -> list[float]:
    """Run ``code`` as a script (the workers import it as the main module); the figures it printed."""
    script.write_text(code)
    done = subprocess.run([sys.executable, str(script)], check=True, capture_output=True, text=True)
    return [float(figure) for figure in done.stdout.split()]


def measure(repeats: int, scratch: Path) -> dict[str, list[float]]:
    """Every step's figures over ``repeats`` rounds, the steps interleaved in each round."""
    figures: dict[str, list[float]] = {}
    for _ in range(repeats):
        for name, _, code in STEPS:
            kind, _, body = code.partition(":")
            value = _outside(body) if kind == "outside" else _inside(code, scratch / "step.py")[0]
            figures.setdefault(name, []).append(value)
        for name, _, code in POOLS:
            first, second = _inside(_POOL + code, scratch / "pools.py")
            figures.setdefault(f"{name}: first pool, import included", []).append(first)
            figures.setdefault(f"{name}: second pool", []).append(second)
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    compileall.compile_dir(str(Path(procpool.__file__).parent), quiet=1)
    with tempfile.TemporaryDirectory() as directory:
        figures = measure(args.repeats, Path(directory))
    described = {name: text for name, text, _ in STEPS} | {
        f"{name}: {part}": text for name, text, _ in POOLS for part in ("first pool, import included", "second pool")
    }
    print("| step | what | median (min-max), ms |\n| --- | --- | --- |")
    for name, values in figures.items():
        print(f"| {name} | {described[name]} | {statistics.median(values):.1f} ({min(values):.1f}-{max(values):.1f}) |")
    args.out.write_text(
        json.dumps({"machine": machine.describe_machine(), "repeats": args.repeats, "figures": figures}, indent=1)
        + "\n"
    )


if __name__ == "__main__":
    main()

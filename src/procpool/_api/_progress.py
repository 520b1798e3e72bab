"""Progress displays for ``Pool.map(..., progress=...)``: tqdm, plain text, or the caller's callback."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import Any, Literal, Protocol, TextIO

ProgressOption = bool | Literal["tqdm", "text"] | Callable[[int, int | None], object]

_REDRAW = 0.1  # seconds between redraws of a terminal line
_QUIET_LINE = 5.0  # seconds between lines when not on a terminal and the total is unknown
_BAR = 24


class Progress(Protocol):
    def advance(self, count: int) -> None: ...
    def close(self) -> None: ...


def open_progress(option: object, total: int | None, description: str) -> Progress | None:
    """The display ``option`` asks for, over ``total`` items (None: unknown).

    ``True`` picks tqdm on a terminal when it is installed, else plain text; ``"tqdm"`` and
    ``"text"`` force one; a callable is called as ``callback(done, total)`` after each chunk.

    Raises:
        ValueError: ``option`` is none of these.
        ImportError: ``"tqdm"`` is asked for and not installed.
    """
    if option is False or option is None:
        return None
    if callable(option):
        return _CallbackProgress(option, total)
    stream = sys.stderr
    if option is True:
        option = "tqdm" if _is_terminal(stream) and _tqdm_installed() else "text"
    if option == "tqdm":
        return _TqdmProgress(total, description)
    if option == "text":
        return _TextProgress(total, description, stream)
    raise ValueError(f"progress must be True, False, 'tqdm', 'text' or a callable(done, total), not {option!r}")


def _is_terminal(stream: TextIO | None) -> bool:
    try:
        return stream is not None and stream.isatty()
    except ValueError:  # closed
        return False


def _tqdm_installed() -> bool:
    try:
        import tqdm  # noqa: F401
    except ImportError:
        return False
    return True


class _CallbackProgress:
    def __init__(self, callback: Callable[[int, int | None], object], total: int | None) -> None:
        self._callback = callback
        self._total = total
        self._done = 0

    def advance(self, count: int) -> None:
        self._done += count
        self._callback(self._done, self._total)

    def close(self) -> None:
        pass


class _TqdmProgress:
    def __init__(self, total: int | None, description: str) -> None:
        try:
            from tqdm.auto import tqdm
        except ImportError:
            raise ImportError("progress='tqdm' needs tqdm: pip install 'procpool[progress]'") from None
        self._bar: Any = tqdm(total=total, desc=description, unit="item", dynamic_ncols=True)

    def advance(self, count: int) -> None:
        self._bar.update(count)

    def close(self) -> None:
        self._bar.close()


class _TextProgress:
    """A redrawn line on a terminal; elsewhere (logs, CI) a line per tenth of the work."""

    def __init__(self, total: int | None, description: str, stream: TextIO | None) -> None:
        self._total = total
        self._description = description
        self._stream = stream
        self._terminal = _is_terminal(stream)
        self._done = 0
        self._start = self._last_drawn = time.monotonic()
        self._last_tenth = 0
        self._closed = False

    def advance(self, count: int) -> None:
        self._done += count
        now = time.monotonic()
        if self._terminal:
            if now - self._last_drawn >= _REDRAW:
                self._draw(now, end="\r")
        elif self._total:
            tenth = 10 * self._done // self._total
            if tenth > self._last_tenth and self._done < self._total:
                self._last_tenth = tenth
                self._draw(now, end="\n")
        elif now - self._last_drawn >= _QUIET_LINE:
            self._draw(now, end="\n")

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._draw(time.monotonic(), end="\n")

    def _draw(self, now: float, end: str) -> None:
        self._last_drawn = now
        if self._stream is None:
            return
        elapsed = now - self._start
        rate = f"{self._done / elapsed:,.1f}/s" if elapsed > 0 else "-"
        if self._total:
            share = min(self._done / self._total, 1.0)
            filled = round(share * _BAR)
            bar = "#" * filled + "." * (_BAR - filled)
            line = f"{self._description}: {share:4.0%} [{bar}] {self._done}/{self._total} {elapsed:.1f}s {rate}"
        else:
            line = f"{self._description}: {self._done} items {elapsed:.1f}s {rate}"
        self._stream.write(line + end)
        self._stream.flush()

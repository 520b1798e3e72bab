"""Argument checks of the public API: clear errors at the call, shared by every pool."""

from __future__ import annotations

import functools


def describe(fn: object) -> str:
    name = getattr(fn, "__qualname__", None) or getattr(fn, "__name__", None)
    if isinstance(fn, functools.partial):
        name = f"partial({describe(fn.func)})"
    return str(name) if name else type(fn).__qualname__


def check_callable(fn: object) -> None:
    if not callable(fn):
        raise TypeError(f"fn must be a callable (a function, lambda, method...), not {type(fn).__name__}: {fn!r:.80}")


def check_bool(name: str, value: object) -> None:
    # Strict: a truthy string such as "no" would silently mean yes.
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be True or False, not {value!r:.80}")


def check_positive_int(name: str, value: object, *, optional: bool) -> None:
    if value is None and optional:
        return
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{name} must be a positive integer{' or None' if optional else ''}, not {value!r}")


def check_count(name: str, value: object) -> None:
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"{name} must be an int, not {type(value).__name__}")
    if value < 0:
        raise ValueError(f"{name} must be >= 0, not {value!r}")


def check_seconds(name: str, value: object) -> None:
    """A positive number of seconds, or None."""
    if value is None:
        return
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        raise TypeError(f"{name} must be a number of seconds or None, not {type(value).__name__}")
    if not value > 0 or value == float("inf"):
        raise ValueError(f"{name} must be a finite number of seconds > 0, or None, not {value!r}")


def check_buffer_threshold(value: object, minimum: int) -> None:
    """None (no buffer out of band), or a number of bytes of at least ``minimum``."""
    if value is None:
        return
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"buffer_threshold must be a number of bytes (an int) or None, not {type(value).__name__}")
    if value < minimum:
        raise ValueError(
            f"buffer_threshold must be at least {minimum} bytes (64 KiB), or None to keep every buffer in "
            f"the pickle, not {value!r}"
        )

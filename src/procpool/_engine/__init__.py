"""The local engine: worker processes on this machine (`LocalBackend`), their handles, slots and healing."""

from ._local import LocalBackend as LocalBackend
from ._process import mp_lock as mp_lock
from ._process import poll_exitcode as poll_exitcode
from ._process import start_in_thread as start_in_thread
from ._process import worker_context as worker_context

__all__ = ("LocalBackend", "mp_lock", "poll_exitcode", "start_in_thread", "worker_context")

"""The local engine: worker processes on this machine (`LocalBackend`), their handles, slots and healing."""

from ._local import LocalBackend as LocalBackend
from ._process import poll_exitcode as poll_exitcode
from ._process import start_in_thread as start_in_thread

__all__ = ("LocalBackend", "poll_exitcode", "start_in_thread")

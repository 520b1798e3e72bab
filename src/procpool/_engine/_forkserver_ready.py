"""Preloaded by multiprocessing's forkserver after the main module (see `worker_context`): the
main module's import is over, so the forkserver no longer dies with the thread that started it
(see `_process._forkserver_dies_with_its_owner`), and from now on survives a fork that fails
(see `_process.guard_forkserver_forks`). Nothing else imports it."""

from ._process import guard_forkserver_forks, set_parent_death_signal

set_parent_death_signal(0)
guard_forkserver_forks()

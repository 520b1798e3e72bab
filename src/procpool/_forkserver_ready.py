"""Preloaded by multiprocessing's forkserver last (see `_engine._process.worker_context`): the
main module's import is over, so the forkserver no longer dies with the thread that started it
(see `_forkserver.die_with_owner_while_importing_main`), and from now on survives a fork that
fails (see `_forkserver.guard_forks`). Nothing else imports it."""

from ._forkserver import guard_forks, set_parent_death_signal

set_parent_death_signal(0)
guard_forks()

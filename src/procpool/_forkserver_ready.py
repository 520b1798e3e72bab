"""Preloaded by multiprocessing's forkserver last (see `_launch.worker_context`): it
imports the main module if that runs by name (see `_forkserver.import_main_by_name`); then the
main module's import is over, so the forkserver no longer dies with the thread that started it
(see `_forkserver.die_with_owner_while_importing_main`), and from now on survives a fork that
fails (see `_forkserver.guard_forks`). Nothing else imports it."""

from ._forkserver import guard_forks, import_main_by_name, set_parent_death_signal

import_main_by_name()
set_parent_death_signal(0)
guard_forks()

"""The public API layer: the verbs written once against the `Backend` boundary, `Pool` (the local
engine's facade), the executor view, maps, streams and the default pool.

`Pool` and the facade import without the engine (see `procpool._launch`); the other names are
imported on first use.
"""

from .._lazy import import_on_first_use
from ._checks import check_positive_int as check_positive_int
from ._pool import Pool as Pool
from ._verbs import PoolFacade as PoolFacade
from ._verbs import PoolOptions as PoolOptions

TYPE_CHECKING = False
if TYPE_CHECKING:
    from ._default import configure_default_pool as configure_default_pool
    from ._default import default_pool as default_pool
    from ._default import run_sync as run_sync
    from ._executor import PoolExecutor as PoolExecutor
    from ._map import MapIterator as MapIterator
    from ._map import as_completed as as_completed
    from ._stream import StreamIterator as StreamIterator

_HOMES = {
    "configure_default_pool": "._default",
    "default_pool": "._default",
    "run_sync": "._default",
    "PoolExecutor": "._executor",
    "MapIterator": "._map",
    "as_completed": "._map",
    "StreamIterator": "._stream",
}

__all__ = (
    "MapIterator",
    "Pool",
    "PoolExecutor",
    "PoolFacade",
    "PoolOptions",
    "StreamIterator",
    "as_completed",
    "check_positive_int",
    "configure_default_pool",
    "default_pool",
    "run_sync",
)

if not TYPE_CHECKING:  # type checkers see the imports above
    __getattr__ = import_on_first_use(__name__, _HOMES)


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})

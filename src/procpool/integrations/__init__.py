"""procpool in web servers: one pool per web process, started and stopped by the app's lifespan.

- `procpool.integrations.starlette`: for Starlette and any framework built on it.
- `procpool.integrations.fastapi`: the same for FastAPI, plus dependencies (``pip install 'procpool[fastapi]'``).

This package imports no web framework; each of those modules imports its own when it is imported.
"""

from ._sizing import web_pool_size as web_pool_size

__all__ = ("web_pool_size",)

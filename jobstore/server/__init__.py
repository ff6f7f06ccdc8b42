"""The job service: a store's jobs as HTTP resources, for clients, workers and pages elsewhere.

Needs the ``server`` extra (``pip install 'jobstore[server]'``): Starlette for the application,
uvicorn to serve it. Nothing else in jobstore imports this package.
"""

from __future__ import annotations

from ._app import DEFAULT_MAX_BODY, create_app
from ._serve import serve

__all__ = ["DEFAULT_MAX_BODY", "create_app", "serve"]

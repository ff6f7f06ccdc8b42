"""Where a store keeps its jobs: the engines behind :class:`~jobstore.JobStore`.

The JSON-file engine (``_tinydb``) is the default and needs nothing beyond the core; each engine
implements the protocols of ``_base``.
"""

from __future__ import annotations

from ._base import Batch, Document, Engine, Session, StoreProblem
from ._tinydb import TinyDBEngine

__all__ = ["Batch", "Document", "Engine", "Session", "StoreProblem", "TinyDBEngine"]

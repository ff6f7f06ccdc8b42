"""The api.job module's functions, faithful to their camelCase names.

Import them from here (``from jobstore.api import createJob``), as from ``uaimodal.api``, or take
the module (``from jobstore.api import job``).
"""

from __future__ import annotations

from . import job
from .job import *  # noqa: F403  (every name of job.__all__, listed there once)

__all__ = ["job"]
__all__ += job.__all__
__all__.sort()  # sorted, as every __all__ of the package is

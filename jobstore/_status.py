"""The job statuses; each one is also the name of the table that holds jobs in it."""

from __future__ import annotations

from enum import Enum

from ._errors import InvalidStateError


class JobStatus(str, Enum):
    """Where a job is in its life; a job's ``status`` always names the table that holds it."""

    IDLE = "idle"
    PENDING = "pending"
    RUNNING = "running"
    FINISHED = "finished"
    ERROR = "error"

    def __str__(self) -> str:
        return self.value

    @classmethod
    def parse(cls, state: object) -> JobStatus:
        """Return the status named by ``state`` (a name or a member).

        :param state: a status name such as ``"pending"``, or a member
        :raises InvalidStateError: for anything that names no status
        """
        if isinstance(state, cls):
            return state
        if isinstance(state, str):
            try:
                return cls(state)
            except ValueError:
                pass
        raise InvalidStateError(state, [member.value for member in cls])


#: Every status, in the order the states are listed and searched.
STATES: tuple[JobStatus, ...] = tuple(JobStatus)

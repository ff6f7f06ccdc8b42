"""When a pending job may be claimed, and which first: delays, priorities, retries with backoff, dependencies, keys.

The claim order, on every engine: of the due jobs whose dependencies have all finished, the
highest ``priority`` first; among equal priorities, the job due longest, where a job is due from
its ``runAt`` if it has one, else from when it entered pending. A job with no scheduling field is
due as it enters, so the order is then the plain first-in, first-out of earlier releases.
"""

from __future__ import annotations

import datetime
import random
from collections.abc import Container, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from ._errors import InvalidJobError
from ._times import parse_time, timestamp, utc_now

#: The fields a submitter may give to schedule a job, as the schema names them (``delay`` is
#: not stored: it becomes ``runAt``).
FIELDS = ("runAt", "priority", "maxRetries", "retryBackoff", "dependsOn", "key")

#: The longest a retry waits, whatever its backoff doubled to.
BACKOFF_CAP = 3600.0

#: The backoff of a retry when neither the job nor the store gives one.
DEFAULT_BACKOFF = 10.0


def due_since(job: Mapping[str, Any]) -> str:
    """The time (as jobstore writes it) a pending job is due from: its ``runAt``, else its entry into pending.

    Compared as text, as PostgreSQL compares its column of the same: every time jobstore writes is
    UTC in one format, whose order is the text's.
    """
    run_at = job.get("runAt")
    if isinstance(run_at, str):
        return run_at
    history = job.get("history")
    if isinstance(history, list) and history and isinstance(history[-1], Mapping):
        at = history[-1].get("at")
        if isinstance(at, str):
            return at
    created = job.get("createdAt")
    return created if isinstance(created, str) else ""


def priority(job: Mapping[str, Any]) -> float:
    value = job.get("priority", 0)
    return value if isinstance(value, (int, float)) and not isinstance(value, bool) else 0


def claim_order(job: Mapping[str, Any]) -> tuple[float, str]:
    """The key the claim order sorts by (smallest first)."""
    return -priority(job), due_since(job)


def depends_on(job: Mapping[str, Any]) -> list[str]:
    """The ids the job waits for (none for a value damaged by hand, which the schema names)."""
    value = job.get("dependsOn")
    return [item for item in value if isinstance(item, str)] if isinstance(value, list) else []


def backoff(job: Mapping[str, Any], retry: int, default: float = DEFAULT_BACKOFF) -> float:
    """Seconds retry number ``retry`` (from 1) waits: the backoff doubled at each retry, capped, with jitter.

    The jitter keeps the wait between half and all of the doubled value, so that jobs failing
    together do not all come back at the same instant.
    """
    base = job.get("retryBackoff", default)
    if isinstance(base, bool) or not isinstance(base, (int, float)) or base <= 0:
        base = default
    doubled = min(float(base) * 2.0 ** (retry - 1), BACKOFF_CAP)
    return doubled / 2 + random.uniform(0, doubled / 2)


def run_at_text(job_id: object, value: object) -> str:
    """A time given for ``runAt`` (a datetime or ISO 8601 text; naive means UTC), as jobstore writes it.

    :raises InvalidJobError: naming ``runAt``, for anything else
    """
    moment = value if isinstance(value, datetime.datetime) else parse_time(value)
    if moment is None:
        raise InvalidJobError(job_id, [("runAt", f"a time is a datetime or ISO 8601 text, not {value!r}")])
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=datetime.timezone.utc)
    try:
        return timestamp(moment)
    except OverflowError:
        raise InvalidJobError(job_id, [("runAt", f"a time is within the years 1 to 9999 in UTC, not {value!r}")]) from None


def named(
    run_at: object = None, priority: object = None, max_retries: object = None, retry_backoff: object = None, depends_on: object = None, key: object = None
) -> dict[str, Any]:
    """The scheduling keywords of ``create_job`` under the schema's names, as :func:`settle` takes them; dependencies given as any iterable become a list."""
    if depends_on is not None and isinstance(depends_on, Iterable) and not isinstance(depends_on, (str, bytes, Mapping)):
        depends_on = list(depends_on)
    return {"runAt": run_at, "priority": priority, "maxRetries": max_retries, "retryBackoff": retry_backoff, "dependsOn": depends_on, "key": key}


def settle(job_id: object, fields: dict[str, Any], delay: object = None) -> dict[str, Any]:
    """Check and settle the scheduling fields a submitter gave, in place: ``delay`` becomes ``runAt``, a time is written as jobstore writes times.

    The types are the schema's to check too; these checks name what a caller most often gets wrong.

    :param job_id: the job concerned, for the error
    :param fields: the job's fields as given
    :param delay: seconds from now before the job is due; None for none
    :raises InvalidJobError: naming the field at fault
    """
    if delay is not None:
        if fields.get("runAt") is not None:
            raise InvalidJobError(job_id, [("runAt", "give a delay or a time to run at, not both")])
        if isinstance(delay, datetime.timedelta):
            delay = delay.total_seconds()
        if isinstance(delay, bool) or not isinstance(delay, (int, float)) or not 0 <= delay <= 1e11:
            raise InvalidJobError(job_id, [("delay", f"a delay is a non-negative number of seconds, not {delay!r}")])
        fields["runAt"] = timestamp(utc_now() + datetime.timedelta(seconds=delay))
    elif fields.get("runAt") is not None:
        fields["runAt"] = run_at_text(job_id, fields["runAt"])
    for name in ("priority", "maxRetries"):
        value = fields.get(name)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or (name == "maxRetries" and value < 0)):
            expected = "an int" if name == "priority" else "a non-negative int"
            raise InvalidJobError(job_id, [(name, f"{name} is {expected}, not {value!r}")])
    backoff_given = fields.get("retryBackoff")
    if backoff_given is not None and (isinstance(backoff_given, bool) or not isinstance(backoff_given, (int, float)) or not 0 < backoff_given <= BACKOFF_CAP):
        raise InvalidJobError(job_id, [("retryBackoff", f"a backoff is a positive number of seconds up to {BACKOFF_CAP:g}, not {backoff_given!r}")])
    needs = fields.get("dependsOn")
    if needs is not None:
        if isinstance(needs, (str, bytes, Mapping)) or not isinstance(needs, (list, tuple, set, frozenset)):
            raise InvalidJobError(job_id, [("dependsOn", f"dependsOn is a list of job ids, not {needs!r}")])
        ids = []
        for item in needs:
            if isinstance(item, int) and not isinstance(item, bool):
                item = str(item)
            if not isinstance(item, str) or not item:
                raise InvalidJobError(job_id, [("dependsOn", f"a job id is a non-empty string or an int, not {item!r}")])
            if item not in ids:
                ids.append(item)
        fields["dependsOn"] = ids
    key = fields.get("key")
    if key is not None and (not isinstance(key, str) or not key):
        raise InvalidJobError(job_id, [("key", f"a key is a non-empty string, not {key!r}")])
    for name in FIELDS:
        if fields.get(name) is None:
            fields.pop(name, None)  # None means not given
    return fields


@dataclass(frozen=True)
class Plan:
    """What a job's scheduling says of it now, for people: the command's list and the dashboard."""

    #: when it is due (``runAt``), while it waits for that time; None when it is due already or has ended
    due: str | None
    #: its priority (0 unless given)
    priority: float
    #: retries it has left, for a job with ``maxRetries``; None for one without
    retries_left: int | None
    #: the jobs it depends on that have not finished, while it waits
    waits_on: tuple[str, ...]

    def __bool__(self) -> bool:
        """Whether there is anything to say: a plain job has no plan worth a column."""
        return self.due is not None or self.priority != 0 or self.retries_left is not None or bool(self.waits_on)


def plan(job: Mapping[str, Any], finished: Container[str], now: str | None = None) -> Plan:
    """The job's plan as it stands at ``now`` (a time as jobstore writes it; by default the present).

    :param finished: the ids of the jobs that have finished (a set, or a table's keys)
    """
    status = job.get("status")
    waiting = status in ("idle", "pending")
    run_at = job.get("runAt")
    moment = now or timestamp(utc_now())
    allowed, used = job.get("maxRetries"), job.get("retries", 0)
    return Plan(
        due=run_at if waiting and isinstance(run_at, str) and run_at > moment else None,
        priority=priority(job),
        retries_left=max(allowed - used, 0) if isinstance(allowed, int) and isinstance(used, int) else None,
        waits_on=tuple(needed for needed in depends_on(job) if needed not in finished) if waiting else (),
    )

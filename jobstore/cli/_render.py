"""How the command shows jobs to a person: ages, progress, tables, one job in full, the counts."""

from __future__ import annotations

import datetime
import json
import re
from collections.abc import Collection, Container, Iterable, Mapping, Sequence
from typing import Any

from rich.cells import cell_len

from .. import _schedule
from .._lifecycle import lease_lapsed
from .._times import age, parse_time, span, timestamp, utc_now
from .._status import STATES, JobStatus

_TIMES = ("createdAt", "updatedAt", "startedAt", "finishedAt", "leaseExpiresAt")
#: The states in which a job still waits to run: those whose ``runAt`` and dependencies matter.
WAITING = (JobStatus.IDLE.value, JobStatus.PENDING.value)
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_DURATION = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*")


def parse_duration(text: str) -> float:
    """Seconds in a duration written ``90``, ``90s``, ``15m``, ``12h``, ``7d`` or ``2w``.

    :raises ValueError: naming the text, for anything else
    """
    match = _DURATION.fullmatch(text)
    if not match:
        raise ValueError(f"{text!r} is not a duration such as 90s, 15m, 12h, 7d or 2w")
    return float(match[1]) * _UNITS[match[2] or "s"]


def progress(job: Mapping[str, Any]) -> str:
    """The job's progress as ``3/10`` (or ``3`` without a total); empty when it reported none."""
    reported = job.get("progress")
    if not isinstance(reported, Mapping):
        return ""
    completed, total = reported.get("completed"), reported.get("total")
    return f"{completed}/{total}" if total is not None else f"{completed}"


def aligned(rows: Sequence[Sequence[str]], right: Collection[int] = ()) -> list[str]:
    """Rows of text as lines of aligned columns (those in ``right`` justified right).

    Written out here rather than drawn by a table library: a listing of tens of thousands of
    jobs must print in a moment, and a table that measures every row first takes seconds.
    """
    cells = [[_cell(value) for value in row] for row in rows]
    widths = [max((cell_len(row[column]) for row in cells), default=0) for column in range(len(cells[0]))] if cells else []
    lines = []
    for row in cells:
        padded = []
        for column, value in enumerate(row):
            gap = " " * (widths[column] - cell_len(value))
            padded.append(gap + value if column in right else value + gap)
        lines.append("  ".join(padded).rstrip())
    return lines


def _cell(value: str, limit: int = 40) -> str:
    """A value fit for one cell: on one line, and cut at ``limit`` characters."""
    flat = " ".join(value.split()) if any(character in value for character in "\n\r\t\v\f") else value
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


#: How a running job whose lease has lapsed is shown: its worker is likely gone, and the next
#: claim or ``requeue-expired`` will take the job back.
LAPSED = "running (lease lapsed)"


def job_lines(jobs: Iterable[Mapping[str, Any]], finished: Container[str] | None = None) -> list[str]:
    """The jobs as a header and a line each: id, name, user, status, progress and age (since submitted).

    :param finished: the ids of the finished jobs, to tell what each job still waits on; when given
        and some job is scheduled, the lines also show when each is due, its priority, its retries
        left and the jobs it waits on (a store without scheduled jobs lists as it always has)
    """
    now = utc_now()
    listed = list(jobs)
    moment = timestamp(now)
    plans = [_schedule.plan(job, finished, moment) for job in listed] if finished is not None else []
    scheduled = any(plans)
    rows = [["id", "name", "user", "status", "progress", "age", *(("due", "priority", "retries left", "waits on") if scheduled else ())]]
    for index, job in enumerate(listed):
        fields = [str(job.get(name, "")) for name in ("id", "name", "user")]
        status = LAPSED if lease_lapsed(job, now) else str(job.get("status", ""))
        row = [*fields, status, progress(job), age(job.get("createdAt"), now)]
        if scheduled:
            row += plan_cells(plans[index], now)
        rows.append(row)
    return aligned(rows, right={5, 6, 7, 8} if scheduled else {5})


def plan_cells(plan: _schedule.Plan, now: datetime.datetime) -> list[str]:
    """A job's plan as the list's cells: due (``in 5m``), priority, retries left and the jobs it waits on; blank where there is nothing to say."""
    moment = parse_time(plan.due)
    due = f"in {span((moment - now).total_seconds())}" if moment is not None else ""
    retries = "" if plan.retries_left is None else str(plan.retries_left)
    return [due, f"{plan.priority:g}", retries, id_list(plan.waits_on)]


def id_list(ids: Sequence[str], limit: int = 40) -> str:
    """Job ids for one cell: as many whole ids as fit in ``limit`` characters, then how many more (``a,b +3``).

    An id cut short names no job, so the ids left out are counted rather than cut.
    """
    shown: list[str] = []
    for index, job_id in enumerate(ids):
        left = len(ids) - index - 1
        text = ",".join([*shown, job_id]) + (f" +{left}" if left else "")
        if shown and len(text) > limit:
            break
        shown.append(job_id)
    more = len(ids) - len(shown)
    return ",".join(shown) + (f" +{more}" if more else "")


def job_detail(job: Mapping[str, Any]) -> str:
    """One job in full: each field on its own line, then its messages and its history, one line each."""
    now = utc_now()
    rows = []
    for name, value in job.items():
        if name in ("messages", "history"):
            continue
        if name == "progress":
            value = progress(job)
        elif (name in _TIMES or (name == "runAt" and job.get("status") in WAITING)) and (moment := parse_time(value)) is not None:
            value = f"{value} ({age(value, now)} ago)" if moment <= now else f"{value} (in {span((moment - now).total_seconds())})"
        rows.append((name, value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)))
    width = max((len(name) for name, _ in rows), default=0)
    # A value of several lines keeps its later lines under its first.
    lines = [f"{name:<{width}}  {value}".rstrip().replace("\n", "\n" + " " * (width + 2)) for name, value in rows]
    messages = job.get("messages")
    if isinstance(messages, str) and messages:
        lines += ["", "messages", *(f"  {line}" for line in messages.splitlines())]
    history = job.get("history")
    if isinstance(history, list) and history:
        lines += ["", "history"]
        lines += [f"  {entry.get('at', '?')}  {entry.get('status', '?')}" for entry in history if isinstance(entry, Mapping)]
    return "\n".join(lines)


def statistics_lines(stats: Mapping[str, Any]) -> list[str]:
    """The figures of :func:`statistics` for a person, one per line."""
    oldest = stats["oldestPendingSeconds"]
    rows = [(state.value, str(stats[state.value])) for state in STATES]
    # Among the running, not beside them: the states' counts still add up to the total.
    rows.insert(STATES.index(JobStatus.RUNNING) + 1, (LAPSED, str(stats["leaseLapsed"])))
    rows += [
        ("total", str(stats["total"])),
        ("oldest pending", "-" if oldest is None else span(oldest)),
        ("finished in the last hour", str(stats["finishedLastHour"])),
    ]
    return aligned(rows, right={1})

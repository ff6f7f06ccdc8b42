"""The job resource for a person: every field, the progress bar, messages as lines, the history as a timeline, and the actions its state allows."""

from __future__ import annotations

import datetime
from collections.abc import Container, Mapping
from html import escape
from typing import Any
from urllib.parse import quote

from .. import _schedule
from .._lifecycle import FINAL_STATES
from .._times import parse_time, span, timestamp, utc_now
from .._status import JobStatus
from ._layout import ago, layout, text

#: Fields shown in a section of their own rather than in the table.
_SECTIONS = ("messages", "history", "progress", "result")
#: The jobs a job waits on that are named by a link; the rest are counted.
_WAITS_SHOWN = 3


def job_link(job_id: str) -> str:
    """A link to a job's page, its id escaped both in the address and as text."""
    return f'<a href="/jobs/{escape(quote(job_id, safe=""))}">{escape(job_id)}</a>'


def plan_of(job: Mapping[str, Any], finished: Container[str], now: datetime.datetime) -> _schedule.Plan:
    """The job's plan at ``now``, as the command's list works it out."""
    return _schedule.plan(job, finished, timestamp(now))


def schedule_facts(plan: _schedule.Plan, now: datetime.datetime) -> str:
    """A job's plan as escaped markup: when it is due, its priority, its retries left and the jobs it waits on; empty when a plain job has nothing to say."""
    facts = []
    if plan.due is not None:
        due = parse_time(plan.due)
        when = f"in {span((due - now).total_seconds())}" if due is not None else f"at {escape(plan.due)}"  # a time edited by hand, shown as it is
        facts.append(f'<span data-plan="due">due {when}</span>')
    if plan.priority != 0:
        facts.append(f'<span data-plan="priority">priority {escape(str(plan.priority))}</span>')
    if plan.retries_left is not None:
        left = plan.retries_left
        facts.append(f'<span data-plan="retries">{left or "no"} {"retry" if left == 1 else "retries"} left</span>')
    if plan.waits_on:
        links = ", ".join(job_link(job_id) for job_id in plan.waits_on[:_WAITS_SHOWN])
        more = len(plan.waits_on) - _WAITS_SHOWN
        facts.append(f'<span data-plan="waits">waits on {links}{f" and {more} more" if more > 0 else ""}</span>')
    return "; ".join(facts)


def progress_bar(progress: Any) -> str:
    """A job's progress as a bar and its figures (escaped markup); empty when it has none."""
    if not isinstance(progress, Mapping):
        return ""
    completed, total = progress.get("completed"), progress.get("total")
    if isinstance(total, int) and total > 0:
        return f'<progress max="{total}" value="{escape(str(completed))}"></progress> {escape(str(completed))} of {total}'
    return f"<progress></progress> {escape(str(completed))} done"


def actions(job: Mapping[str, Any]) -> list[tuple[str, str]]:
    """The actions the job's state allows, as (action, label): cancel until it ends, retry once it has, delete always."""
    status = job.get("status")
    ended = status in {state.value for state in FINAL_STATES}
    allowed = [("retry", "Retry")] if ended else [("cancel", "Cancel")]
    if status == JobStatus.RUNNING and job.get("cancelRequested"):
        allowed = []  # asked already: its worker decides when to stop
    return [*allowed, ("delete", "Delete")]


def job_page(job: Mapping[str, Any], finished: Container[str] = frozenset()) -> str:
    """Return the HTML page of one job.

    :param finished: the ids of finished jobs among those it depends on, to tell which it still waits on
    """
    now = utc_now()
    job_id = escape(str(job.get("id", "")))
    status = escape(str(job.get("status", "")))
    rows = "".join(
        f'<tr><th scope="row">{escape(str(name))}</th><td class="text">{text(value)}</td></tr>'
        for name, value in job.items()
        if name not in _SECTIONS
    )
    buttons = "".join(
        f'<button type="button" data-action="{action}" data-id="{job_id}"{" class=danger" if action == "delete" else ""}>{label}</button>'
        for action, label in actions(job)
    )
    parts = [
        f'<h1>job {job_id} <span class="status-{status}">{status}</span></h1>',
        f'<div class="actions">{buttons}</div>',
    ]
    bar = progress_bar(job.get("progress"))
    if bar:
        parts.append(f"<p>progress {bar}</p>")
    plan = plan_of(job, finished, now)
    if plan:
        parts.append(f'<p id="schedule">schedule: {schedule_facts(plan, now)}</p>')
    parts.append(f'<div class="scroll"><table><caption class="muted">every field</caption>{rows}</table></div>')
    parts.append("<h2>result</h2>")
    result = job.get("result")
    parts.append(f"<pre>{text(result)}</pre>" if result not in (None, "") else '<p class="muted">none yet</p>')
    messages = job.get("messages")
    parts.append("<h2>messages</h2>")
    if isinstance(messages, str) and messages:
        parts.append("<ol>" + "".join(f"<li>{escape(line)}</li>" for line in messages.splitlines()) + "</ol>")
    else:
        parts.append('<p class="muted">none</p>')
    history = job.get("history")
    parts.append("<h2>history</h2>")
    if isinstance(history, list) and history:
        items = "".join(
            f'<li><time datetime="{escape(str(entry.get("at", "")))}">{escape(str(entry.get("at", "")))}</time> '
            f'({ago(entry.get("at"), now)}): {escape(str(entry.get("status", "")))}</li>'
            if isinstance(entry, Mapping)
            else f"<li>{text(entry)}</li>"
            for entry in history
        )
        parts.append(f'<ol class="timeline">{items}</ol>')
    else:
        parts.append('<p class="muted">none</p>')
    return layout(f"job {job.get('id', '')}", "\n".join(parts))

"""The job resource for a person: every field, the progress bar, messages as lines, the history as a timeline, and the actions its state allows."""

from __future__ import annotations

from collections.abc import Mapping
from html import escape
from typing import Any

from .._lifecycle import FINAL_STATES
from .._times import utc_now
from .._status import JobStatus
from ._layout import ago, layout, text

#: Fields shown in a section of their own rather than in the table.
_SECTIONS = ("messages", "history", "progress", "result")


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


def job_page(job: Mapping[str, Any]) -> str:
    """Return the HTML page of one job."""
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

"""The dashboard's overview and job list, rendered on the server from one listing of the store.

Every job field reaches the page escaped; the page's script only ever sets text. Figures are
worked out here from the jobs themselves, so the page and ``/activity`` tell the same story.
"""

from __future__ import annotations

import datetime
from collections.abc import Container, Iterable, Mapping
from html import escape
from typing import Any
from urllib.parse import urlencode

from .._lifecycle import entered, statistics
from .._times import parse_time, utc_now
from .._status import STATES, JobStatus
from ._layout import ago, layout
from ._page import job_link, plan_of, progress_bar, schedule_facts

#: The minutes the activity chart covers.
MINUTES = 60


def activity(jobs: Iterable[Mapping[str, Any]], now: datetime.datetime | None = None) -> dict[str, Any]:
    """Jobs finished and failed per minute over the last hour, oldest minute first."""
    now = now or utc_now()
    counts = {"finished": [0] * MINUTES, "failed": [0] * MINUTES}
    for job in jobs:
        status = job.get("status")
        if status == JobStatus.FINISHED:
            kind, moment = "finished", parse_time(job.get("finishedAt"))
        elif status == JobStatus.ERROR:
            kind, moment = "failed", entered(job)
        else:
            continue
        if moment is None:
            continue
        minutes_ago = int((now - moment).total_seconds() // 60)
        if 0 <= minutes_ago < MINUTES:
            counts[kind][MINUTES - 1 - minutes_ago] += 1
    return {"minutes": MINUTES, "until": now.isoformat().replace("+00:00", "Z"), **counts}


def _chart(figures: Mapping[str, Any]) -> str:
    """The activity as bars, finished above and failed below, in an inline SVG the script updates."""
    most = max(1, *figures["finished"], *figures["failed"])
    bars = []
    for kind, base in (("finished", 44), ("failed", 88)):
        for minute, value in enumerate(figures[kind]):
            height = round(40 * value / most)
            bars.append(f'<rect class="{kind}" data-minute="{minute}" x="{minute * 10}" y="{base - height}" width="8" height="{height}"></rect>')
    total = f"{sum(figures['finished'])} finished, {sum(figures['failed'])} failed"
    return (
        f'<svg id="activity" class="chart" viewBox="0 0 {MINUTES * 10} 90" preserveAspectRatio="none" role="img" '
        f'aria-labelledby="activity-title"><title id="activity-title">jobs finished (above) and failed (below) per minute, last hour</title>'
        f'{"".join(bars)}</svg><p class="muted"><span id="activity-total">{total}</span> in the last hour</p>'
    )


def _lease_left(job: Mapping[str, Any], now: datetime.datetime) -> str:
    expires = parse_time(job.get("leaseExpiresAt"))
    if expires is None:
        return "-"
    left = (expires - now).total_seconds()
    return "lapsed" if left <= 0 else f"{int(left)}s"


def _link(job: Mapping[str, Any]) -> str:
    return job_link(str(job.get("id", "")))


def overview(jobs: list[dict[str, Any]]) -> str:
    """The overview page: the count per state, the last hour's activity, the oldest pending job's age, the running jobs."""
    now = utc_now()
    figures = statistics(jobs)
    cards = "".join(
        f'<div><dt>{state.value}</dt><dd data-count="{state.value}">{figures[state.value]}</dd></div>' for state in STATES
    )
    oldest = figures["oldestPendingSeconds"]
    running = [job for job in jobs if job.get("status") == JobStatus.RUNNING][:50]
    rows = "".join(
        f"<tr><td>{_link(job)}</td><td>{escape(str(job.get('name', '')))}</td><td>{escape(str(job.get('worker', '-')))}</td>"
        f"<td>{progress_bar(job.get('progress')) or '-'}</td><td>{_lease_left(job, now)}</td></tr>"
        for job in running
    )
    body = (
        "<h1>Overview</h1>"
        f'<dl class="counts" aria-label="jobs per state">{cards}<div><dt>total</dt><dd data-count="total">{figures["total"]}</dd></div></dl>'
        f'<p>oldest pending job: <strong id="oldest">{"none waiting" if oldest is None else f"{round(oldest)}s"}</strong></p>'
        f"<h2>Last hour</h2>{_chart(activity(jobs, now))}"
        f'<h2>Running (<span id="running-count">{len(running)}</span>)</h2>'
        '<div class="scroll"><table id="running"><thead><tr><th scope="col">id</th><th scope="col">name</th>'
        '<th scope="col">worker</th><th scope="col">progress</th><th scope="col">lease left</th></tr></thead>'
        f"<tbody>{rows}</tbody></table></div>"
    )
    return layout("overview", body, live="overview")


def _last_line(job: Mapping[str, Any]) -> str:
    messages = job.get("messages")
    lines = messages.splitlines() if isinstance(messages, str) else []
    return lines[-1] if lines else ""


def job_list(page: Mapping[str, Any], query: Mapping[str, str], finished: Container[str] = frozenset()) -> str:
    """The job list page: the filters, a page of jobs (each error with its last message and when it failed), the bulk actions.

    :param finished: the ids of the finished jobs, to tell which jobs a job still waits on; a
        schedule column is shown only when some job listed has a plan to tell (a store without
        scheduled jobs lists as it always has)
    """
    now = utc_now()
    plans = [plan_of(job, finished, now) for job in page["jobs"]]
    scheduled = any(plans)
    state, name, user, order = (query.get(key, "") for key in ("state", "name", "user", "order"))
    options = "".join(
        f'<option value="{value}"{" selected" if value == state else ""}>{value or "any"}</option>'
        for value in ["", *(s.value for s in STATES)]
    )
    orders = "".join(f'<option value="{value}"{" selected" if value == (order or "newest") else ""}>{value} first</option>' for value in ("newest", "oldest"))
    filters = (
        '<form class="filters" method="get" action="/jobs"><input type="hidden" name="f" value="html">'
        f'<label>state<select name="state">{options}</select></label>'
        f'<label>name<input name="name" value="{escape(name)}"></label>'
        f'<label>user<input name="user" value="{escape(user)}"></label>'
        f'<label>order<select name="order">{orders}</select></label>'
        '<button type="submit">Show</button></form>'
    )
    rows = []
    for job, plan in zip(page["jobs"], plans):
        status = str(job.get("status", ""))
        job_id = escape(str(job.get("id", "")))
        if status == JobStatus.ERROR:
            detail = f'{escape(_last_line(job))} <span class="muted">failed {ago(entered(job), now)}</span>'
        else:
            detail = progress_bar(job.get("progress")) if status == JobStatus.RUNNING else ""
        plan_cell = f'<td class="plan">{schedule_facts(plan, now)}</td>' if scheduled else ""
        rows.append(
            f'<tr class="{escape(status)}"><td><input type="checkbox" name="job" value="{job_id}" aria-label="select job {job_id}"></td>'
            f"<td>{_link(job)}</td><td>{escape(str(job.get('name', '')))}</td><td>{escape(str(job.get('user', '')))}</td>"
            f'<td class="status-{escape(status)}">{escape(status)}</td>{plan_cell}'
            f'<td class="text">{detail}</td><td>{ago(job.get("createdAt"), now)}</td></tr>'
        )
    schedule_heading = '<th scope="col">schedule</th>' if scheduled else ""
    table = (
        '<div class="scroll"><table id="jobs"><thead><tr><th scope="col"><input type="checkbox" id="select-all" aria-label="select every job shown"></th>'
        '<th scope="col">id</th><th scope="col">name</th><th scope="col">user</th><th scope="col">status</th>'
        f"{schedule_heading}"
        '<th scope="col">progress or last message</th><th scope="col">submitted</th></tr></thead>'
        f'<tbody>{"".join(rows)}</tbody></table></div>'
        if rows
        else '<p class="muted">no job matches</p>'
    )
    bulk = (
        '<div class="actions" aria-label="with the selected jobs">'
        '<button type="button" data-bulk="retry">Retry selected</button>'
        '<button type="button" data-bulk="cancel">Cancel selected</button>'
        '<button type="button" data-bulk="delete" class="danger">Delete selected</button></div>'
    )
    following = ""
    if page.get("next"):
        kept = {key: value for key, value in query.items() if key in ("state", "name", "user", "order", "limit") and value}
        following = f'<p><a rel="next" href="/jobs?{escape(urlencode({"f": "html", **kept, "cursor": page["next"]}))}">next page</a></p>'
    retry_named = (
        '<h2>Retry every failed job of one name</h2>'
        '<form id="retry-named" class="filters"><label>name<input name="name" required></label>'
        '<button type="submit">Retry them all</button></form>'
    )
    return layout("jobs", f"<h1>Jobs</h1>{filters}{bulk}{table}{following}{retry_named}")

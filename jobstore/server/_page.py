"""The job resource for a person: one HTML page, every field escaped, nothing fetched from elsewhere."""

from __future__ import annotations

import json
from collections.abc import Mapping
from html import escape
from typing import Any

_STYLE = """
body { font: 15px/1.45 system-ui, sans-serif; margin: 1.5rem auto; max-width: 60rem; padding: 0 1rem; color: #1b1b1b; }
h1 { font-size: 1.3rem; word-break: break-all; }
table { border-collapse: collapse; width: 100%; }
th, td { text-align: left; vertical-align: top; padding: .3rem .6rem; border-bottom: 1px solid #ddd; }
th { width: 10rem; font-weight: 600; }
td { word-break: break-word; white-space: pre-wrap; }
progress { width: 20rem; max-width: 100%; }
pre { background: #f5f5f5; padding: .6rem; overflow-x: auto; white-space: pre-wrap; }
.status { font-weight: 600; }
"""

#: Fields shown in their own section rather than in the table.
_SECTIONS = ("messages", "history", "progress")


def _text(value: Any) -> str:
    """A field's value as a person reads it: a string as it is, anything else as its JSON."""
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, indent=2)


def job_page(job: Mapping[str, Any]) -> str:
    """Return the HTML page of one job: its fields, its progress bar, its messages and its history."""
    job_id = escape(str(job.get("id", "")))
    rows = "".join(
        f"<tr><th scope=\"row\">{escape(str(name))}</th><td>{escape(_text(value))}</td></tr>"
        for name, value in job.items()
        if name not in _SECTIONS
    )
    parts = [
        "<!doctype html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>job {job_id}</title><style>{_STYLE}</style></head><body>",
        f'<h1>job {job_id} <span class="status">{escape(str(job.get("status", "")))}</span></h1>',
    ]
    progress = job.get("progress")
    if isinstance(progress, Mapping):
        completed, total = progress.get("completed"), progress.get("total")
        shown = f"{completed} of {total}" if total is not None else f"{completed} done"
        bar = f'<progress max="{escape(str(total))}" value="{escape(str(completed))}"></progress>' if total else "<progress></progress>"
        parts.append(f'<p><label>progress {bar} {escape(shown)}</label></p>')
    parts.append(f"<table>{rows}</table>")
    messages = job.get("messages")
    parts.append("<h2>messages</h2>")
    parts.append(f"<pre>{escape(str(messages))}</pre>" if messages else "<p>none</p>")
    history = job.get("history")
    parts.append("<h2>history</h2>")
    if isinstance(history, list) and history:
        items = "".join(
            f"<li><time>{escape(str(entry.get('at', '')))}</time> {escape(str(entry.get('status', '')))}</li>"
            if isinstance(entry, Mapping)
            else f"<li>{escape(_text(entry))}</li>"
            for entry in history
        )
        parts.append(f"<ol>{items}</ol>")
    else:
        parts.append("<p>none</p>")
    parts.append("</body></html>")
    return "\n".join(parts)

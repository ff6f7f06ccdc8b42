"""What every page of the dashboard shares: the head, the navigation, the token form; and escaping."""

from __future__ import annotations

import datetime
import json
from html import escape
from typing import Any

from .._times import age
from .._version import __version__

#: Where pages come from and may reach: this service alone (no inline script, nothing from elsewhere).
CONTENT_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)


def text(value: Any) -> str:
    """A field's value as escaped text: a string as it is, anything else as its JSON."""
    return escape(value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, indent=2))


def ago(moment: Any, now: datetime.datetime) -> str:
    """How long ago a time a job holds was, in its largest unit (``5m ago``); ``-`` for no time. Plain text, nothing to escape."""
    shown = age(moment, now)
    return shown if shown == "-" else f"{shown} ago"


def layout(title: str, body: str, *, live: str = "") -> str:
    """A whole page: ``body`` (already escaped markup) under the dashboard's header.

    :param title: the page's title, plain text
    :param live: what the script keeps up to date on this page ("overview"), if anything
    """
    return "\n".join(
        [
            "<!doctype html>",
            '<html lang="en"><head><meta charset="utf-8">',
            '<meta name="viewport" content="width=device-width, initial-scale=1">',
            f"<title>{escape(title)} · jobstore</title>",
            '<link rel="icon" href="data:,">',
            '<link rel="stylesheet" href="/static/dashboard.css">',
            '<script src="/static/dashboard.js" defer></script>',
            f'</head><body data-live="{escape(live)}">',
            '<header><nav aria-label="dashboard"><a href="/">Overview</a><a href="/jobs?f=html">Jobs</a></nav>',
            '<form id="token-form" class="token"><label>token for changes'
            '<input type="password" name="token" autocomplete="off"></label><button type="submit">Keep</button></form>',
            "</header>",
            f'<main><p id="notice" role="status" aria-live="polite"></p>{body}</main>',
            f'<footer class="muted"><main>jobstore {escape(__version__)}</main></footer>',
            "</body></html>",
        ]
    )

"""Times as jobstore writes and shows them: ISO 8601 in UTC to the microsecond, and spans in their largest unit."""

from __future__ import annotations

import datetime

__all__ = ["age", "parse_time", "span", "timestamp", "utc_now"]


def utc_now() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc)


def timestamp(moment: datetime.datetime) -> str:
    """A time as jobstore writes it: ISO 8601, UTC, to the microsecond."""
    return moment.astimezone(datetime.timezone.utc).isoformat(timespec="microseconds").replace("+00:00", "Z")


def parse_time(text: object) -> datetime.datetime | None:
    """Read a timestamp jobstore wrote; None for anything else."""
    if not isinstance(text, str):
        return None
    try:
        moment = datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=datetime.timezone.utc)


def age(moment: object, now: datetime.datetime | None = None) -> str:
    """How long ago a timestamp jobstore wrote (or a time) was, in its largest unit: ``42s``, ``5m``, ``3h``, ``2d``; ``-`` for no time."""
    then = moment if isinstance(moment, datetime.datetime) else parse_time(moment)
    if then is None:
        return "-"
    return span(((now or utc_now()) - then).total_seconds())


def span(seconds: float) -> str:
    """A number of seconds in its largest unit, rounded down: ``42s``, ``5m``, ``3h``, ``2d``."""
    seconds = max(seconds, 0)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{int(seconds // size)}{unit}"
    return f"{int(seconds)}s"

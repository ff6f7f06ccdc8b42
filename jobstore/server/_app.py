"""The job service's ASGI application: each job an HTTP resource, every operation of the store a request.

Every store operation runs in a worker thread (the store's file lock blocks), so a slow lock never
stalls the event loop; long-polls and event streams wait in the loop itself, on one watcher of the
store (:class:`~jobstore.server._changes.Changes`), never a thread each.
"""

from __future__ import annotations

import asyncio
import datetime
import functools
import json
import math
import re
from importlib import resources
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from contextlib import asynccontextmanager
from typing import Any, TypeVar

from anyio import to_thread
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response, StreamingResponse
from starlette.routing import Match, Route

from .. import _schedule
from .._errors import InvalidArgumentError, InvalidJobError, JobNotFoundError, JobStateError, JobStoreError
from .._lifecycle import FINAL_STATES, statistics
from .._times import parse_time, utc_now
from .._status import JobStatus
from .._store import JobStore, count, seconds
from .._version import __version__
from .._wire import error_body
from .._wire import status_of as wire_status
from ._changes import Changes
from ._guard import LOOPBACK_NAMES, Guard
from ._openapi import openapi_document
from ._dashboard import activity, job_list, overview
from ._layout import CONTENT_POLICY
from ._page import job_page

T = TypeVar("T")

#: Request bodies past this many bytes are refused (413) unless the service says otherwise.
DEFAULT_MAX_BODY = 1 << 20
#: Jobs per page of ``GET /jobs`` unless asked otherwise, and the most one page holds.
DEFAULT_LIMIT, MOST_LIMIT = 50, 1000
#: Seconds a long-poll (``/wait``, a claim's ``wait``) lasts unless asked otherwise, and at most.
DEFAULT_WAIT, LONGEST_WAIT = 30.0, 300.0
#: Seconds between the comments that keep an idle event stream open through proxies.
_KEEPALIVE = 15.0

class BodyTooLarge(JobStoreError, ValueError):
    """A request body over the service's limit; it was not read whole."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        super().__init__(f"the request body is over the limit of {limit} bytes")


def status_of(error: JobStoreError) -> int:
    """The HTTP status a library error answers with (a body over the limit: 413)."""
    return 413 if isinstance(error, BodyTooLarge) else wire_status(error)


def _json(value: Any, status: int = 200, *, indent: bool = False) -> Response:
    text = json.dumps(value, ensure_ascii=False, indent=2 if indent else None, allow_nan=False)
    return Response(text, status_code=status, media_type="application/json")


class Service:
    """The state of one running service: its store, its settings and its watcher.

    :param store: the store served
    :param max_body: the most bytes a request body may have
    """

    def __init__(self, store: JobStore, *, max_body: int = DEFAULT_MAX_BODY) -> None:
        self.store = store
        self.max_body = count("max_body", max_body, 1)
        self.changes = Changes(store)

    async def run(self, operation: Callable[..., T], *args: Any, **options: Any) -> T:
        """Run a store operation in a worker thread: the file lock may block, the event loop must not."""
        return await to_thread.run_sync(functools.partial(operation, *args, **options))

    async def write(self, operation: Callable[..., T], *args: Any, **options: Any) -> T:
        """Run a store operation that may write: afterwards no listing made before it is served."""
        try:
            return await self.run(operation, *args, **options)
        finally:
            self.changes.stale()

    async def body(self, request: Request) -> Any:
        """The request's JSON body (None when empty), read no further than the limit.

        A body declared over the limit never gets here (the guard refuses it); one sent without a
        length is counted as it comes.
        """
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > self.max_body:
                raise BodyTooLarge(self.max_body)
            chunks.append(chunk)
        data = b"".join(chunks)
        if not data.strip():
            return None
        try:
            return json.loads(data, parse_constant=_no_constant)
        except (ValueError, UnicodeDecodeError, RecursionError) as error:  # RecursionError: nested past what a job holds
            raise InvalidArgumentError("body", data[:80].decode("utf-8", "replace"), f"JSON ({error})") from None

    async def arguments(self, request: Request, names: tuple[str, ...], required: tuple[str, ...] = ()) -> dict[str, Any]:
        """The request body's arguments: a JSON object of only these names, the required ones present."""
        body = await self.body(request)
        if body is None:
            body = {}
        if not isinstance(body, dict):
            raise InvalidArgumentError("body", body, "a JSON object")
        unknown = [name for name in body if name not in names]
        if unknown:
            raise InvalidArgumentError("body", unknown[0], f"one of the arguments {', '.join(names) or '(none)'}")
        missing = [name for name in required if name not in body]
        if missing:
            raise InvalidArgumentError(missing[0], None, "given")
        return body


#: The dashboard's files, shipped in the package, and their types: nothing is fetched from elsewhere.
_ASSETS = {"dashboard.css": "text/css", "dashboard.js": "text/javascript"}


def _page(markup: str) -> Response:
    """A dashboard page, under a policy that lets it load and reach this service alone."""
    return HTMLResponse(markup, headers={"Content-Security-Policy": CONTENT_POLICY, "X-Content-Type-Options": "nosniff"})


def retry_failed(store: JobStore, name: str) -> list[str]:
    """Send every job in error of this name back to pending; returns their ids (one that changed meanwhile is left)."""
    retried = []
    for job in store.get_error_jobs():
        if job.get("name") == name:
            try:
                retried.append(store.retry_job(job["id"])["id"])
            except (JobStateError, JobNotFoundError):
                pass  # retried or removed by someone else meanwhile
    return retried


def _no_constant(name: str) -> Any:
    """NaN and the infinities are not JSON, though Python's parser takes them."""
    raise ValueError(f"{name} is not a JSON value")


def _job_id(request: Request) -> str:
    return str(request.path_params["job_id"])


def _finished_ids(jobs: Iterable[Mapping[str, Any]]) -> frozenset[str]:
    """The ids of the finished jobs among these: what a job's dependencies wait for."""
    return frozenset(str(job.get("id")) for job in jobs if job.get("status") == JobStatus.FINISHED)


def _query_number(request: Request, name: str, default: float, most: float) -> float:
    text = request.query_params.get(name)
    if text is None:
        return default
    try:
        value = float(text)
    except ValueError:
        raise InvalidArgumentError(name, text, "a number of seconds") from None
    if not math.isfinite(value) or value < 0 or value > most:
        raise InvalidArgumentError(name, text, f"a number of seconds from 0 to {most:g}")
    return value


def _wants_html(request: Request) -> bool:
    """Whether the job is asked for as a page: ``?f=html``, or a browser's Accept header without ``?f``."""
    asked = request.query_params.get("f")
    if asked is not None:
        if asked not in ("json", "pjson", "html"):
            raise InvalidArgumentError("f", asked, "json, pjson or html")
        return asked == "html"
    accept = request.headers.get("accept", "")
    html_at, json_at = accept.find("text/html"), accept.find("application/json")
    return html_at >= 0 and (json_at < 0 or html_at < json_at)


def _estimate(job: Mapping[str, Any]) -> float | None:
    """Seconds the running job has left, from its progress so far at the pace so far; None when unknown."""
    progress = job.get("progress")
    started = parse_time(job.get("startedAt"))
    if job.get("status") != JobStatus.RUNNING or not isinstance(progress, Mapping) or started is None:
        return None
    completed, total = progress.get("completed"), progress.get("total")
    if not isinstance(completed, int) or not isinstance(total, int) or completed <= 0 or total < completed:
        return None
    elapsed = (utc_now() - started).total_seconds()
    return round(max(elapsed, 0.0) * (total - completed) / completed, 3)


def short_status(job: Mapping[str, Any]) -> dict[str, Any]:
    """The status resource: what a poller needs, without the messages and history."""
    return {
        "id": job.get("id"),
        "status": job.get("status"),
        "progress": job.get("progress"),
        "startedAt": job.get("startedAt"),
        "finishedAt": job.get("finishedAt"),
        "estimatedSecondsLeft": _estimate(job),
        "cancelRequested": bool(job.get("cancelRequested", False)),
        "canceled": bool(job.get("canceled", False)),
    }


def create_app(
    store: JobStore,
    *,
    token: str | None = None,
    public_read: bool = False,
    max_body: int = DEFAULT_MAX_BODY,
    hosts: frozenset[str] | None = LOOPBACK_NAMES,
) -> Guard:
    """Return the job service for a store, as an ASGI application.

    :param store: the store served
    :param token: the bearer token writes need (and reads, unless ``public_read``); None asks none
    :param public_read: reads need no token
    :param max_body: the most bytes a request body may have (413 past it, unread)
    :param hosts: the names the service answers to in the Host header; None: any
    """
    service = Service(store, max_body=max_body)
    run, write, arguments = service.run, service.write, service.arguments

    async def list_jobs(request: Request) -> Response:
        html = _wants_html(request)
        # The page's filter form sends an empty value for "any".
        query = {key: value for key, value in request.query_params.items() if value != "" or not html}
        limit_text = query.get("limit", str(DEFAULT_LIMIT))
        if not re.fullmatch(r"[0-9]{1,4}", limit_text) or not 1 <= int(limit_text) <= MOST_LIMIT:
            raise InvalidArgumentError("limit", limit_text, f"a whole number from 1 to {MOST_LIMIT}")
        listing = await service.changes.listing()
        page = listing.page(
            state=query.get("state"), name=query.get("name"), user=query.get("user"),
            limit=int(limit_text), cursor=query.get("cursor"), order=query.get("order", "newest"),
        )
        return _page(job_list(page, query, listing.remembered("finished", _finished_ids))) if html else _json(page)

    async def submit(request: Request) -> Response:
        """201 when the submission made a job; 200 when every job answered is one that already held the key its spec gave."""
        body = await service.body(request)
        many = isinstance(body, list)
        if not many and not isinstance(body, dict):
            raise InvalidArgumentError("body", body, "a JSON object of job fields, or an array of them")
        specs: list[Any] = body if many else [body]
        submitted = await write(store.submit_jobs, specs)
        jobs = [job for job, _ in submitted]
        made = any(made for _, made in submitted)
        return _json({"jobs": jobs} if many else jobs[0], 201 if made else 200)

    async def set_job(request: Request) -> Response:
        given = await arguments(request, ("data", "state"))
        return _json(await write(store.set_job, _job_id(request), **given))

    async def found(request: Request) -> dict[str, Any]:
        job, _ = await run(store.find_job, _job_id(request))
        if job is None:
            raise JobNotFoundError(_job_id(request))
        return job

    async def get_job(request: Request) -> Response:
        html = _wants_html(request)
        job = await found(request)
        if html:
            needs = _schedule.depends_on(job)
            looked = await run(store.find_jobs, needs) if needs else {}
            return _page(job_page(job, _finished_ids(looked.values())))
        return _json(job, indent=request.query_params.get("f") == "pjson")

    async def delete_job(request: Request) -> Response:
        job_id = _job_id(request)
        await found(request)  # deleting an unknown job is an error, as the command says
        await write(store.delete_job, job_id)
        return _json({"id": job_id, "deleted": True})

    async def status(request: Request) -> Response:
        return _json(short_status(await found(request)))

    async def history(request: Request) -> Response:
        job = await found(request)
        return _json({"id": job["id"], "status": job.get("status"), "history": job.get("history", [])})

    async def wait(request: Request) -> Response:
        job_id = _job_id(request)
        timeout = _query_number(request, "timeout", DEFAULT_WAIT, LONGEST_WAIT)
        try:
            job = await service.changes.wait_for_end(job_id, timeout)
        except TimeoutError:
            job, _ = await run(store.find_job, job_id)
            if job is not None and JobStatus(job["status"]) not in FINAL_STATES:
                return _json(job, 202)
        if job is None:
            raise JobNotFoundError(job_id)
        return _json(job)

    def action(operation: Callable[..., dict[str, Any]], names: tuple[str, ...] = (), required: tuple[str, ...] = (), **renamed: str) -> Callable[[Request], Any]:
        """A handler for a worker or control operation on one job: its body's arguments passed by name."""

        async def handler(request: Request) -> Response:
            given = await arguments(request, names, required)
            options = {renamed.get(name, name): value for name, value in given.items()}
            return _json(await write(operation, _job_id(request), **options))

        return handler

    async def claim(request: Request) -> Response:
        given = await arguments(request, ("worker", "lease", "wait"))
        wait = given.get("wait")
        patience = 0.0 if wait is None else seconds("wait", wait)
        if patience > LONGEST_WAIT:
            raise InvalidArgumentError("wait", patience, f"at most {LONGEST_WAIT:g} seconds")
        deadline = asyncio.get_running_loop().time() + patience
        while True:
            if await request.is_disconnected():
                return Response(status_code=204)  # no one to hand a job to: claim none
            # Through run, not write: a look that finds nothing changes nothing the listing shows
            # (a lease it recovers is a write the watcher sees).
            claimed = await run(store.claim_job, given.get("worker"), given.get("lease"))
            left = deadline - asyncio.get_running_loop().time()
            if claimed is not None:
                service.changes.stale()
                if await request.is_disconnected():
                    # The claimer went away while its job was taken: back to the queue at once.
                    await write(store.release_job, claimed["id"], "the claimer went away before it got the job")
                    return Response(status_code=204)
                return _json(claimed)
            if left <= 0:
                return Response(status_code=204)
            await service.changes.next_change(min(left, 1.0))  # a lease may lapse meanwhile: look once a second

    async def stats(request: Request) -> Response:
        return _json((await service.changes.listing()).remembered("stats", statistics))

    async def purge(request: Request) -> Response:
        given = await arguments(request, ("state", "olderThan", "keepLast"), required=("state",))
        removed = await write(store.purge_jobs, given["state"], given.get("olderThan"), given.get("keepLast"))
        return _json({"removed": removed})

    async def requeue(request: Request) -> Response:
        await arguments(request, ())
        return _json({"requeued": await write(store.requeue_expired_jobs)})

    async def problems(request: Request) -> Response:
        found = await run(store.check)
        return _json({"problems": [{"path": p.path, "jobId": p.job_id, "detail": p.detail} for p in found]})

    async def schema(request: Request) -> Response:
        return _json((await run(store.job_schema)).document)

    async def events(request: Request) -> Response:
        queue = service.changes.subscribe()

        async def stream() -> AsyncIterator[str]:
            number = 0
            try:
                yield ": jobstore events\n\n"
                while True:
                    try:
                        event = await asyncio.wait_for(queue.get(), _KEEPALIVE)
                    except TimeoutError:
                        yield ": still here\n\n"
                        continue
                    if event is None:
                        return
                    number += 1
                    yield f"id: {number}\nevent: job\ndata: {json.dumps(event, ensure_ascii=False)}\n\n"
            finally:
                service.changes.unsubscribe(queue)

        headers = {"Cache-Control": "no-store", "X-Accel-Buffering": "no"}
        return StreamingResponse(stream(), media_type="text/event-stream", headers=headers)

    async def openapi(request: Request) -> Response:
        return _json(openapi_document((await run(store.job_schema)).document))

    async def index(request: Request) -> Response:
        if _wants_html(request):
            return _page((await service.changes.listing()).remembered("overview", overview))
        links = {"jobs": "/jobs", "stats": "/stats", "events": "/events", "activity": "/activity", "openapi": "/openapi.json"}
        return _json({"service": "jobstore", "version": __version__, "links": links})

    async def recent(request: Request) -> Response:
        return _json((await service.changes.listing()).remembered("activity", activity))

    async def retry_named(request: Request) -> Response:
        given = await arguments(request, ("name",), required=("name",))
        if not isinstance(given["name"], str):
            raise InvalidArgumentError("name", given["name"], "a job name (a string)")
        return _json({"retried": await write(retry_failed, store, given["name"])})

    async def asset(request: Request) -> Response:
        name = request.path_params["name"]
        if name not in _ASSETS:
            raise HTTPException(404, f"no file {name!r}")
        content = resources.files(__package__).joinpath("static", name).read_bytes()
        return Response(content, media_type=_ASSETS[name], headers={"Cache-Control": "max-age=300"})

    async def library_error(request: Request, error: Exception) -> Response:
        assert isinstance(error, JobStoreError)
        return _json(error_body(error), status_of(error))

    async def http_error(request: Request, error: Exception) -> Response:
        assert isinstance(error, HTTPException)
        kind = {404: "NotFound", 405: "MethodNotAllowed"}.get(error.status_code, "HTTPError")
        answer = _json({"error": kind, "detail": str(error.detail)}, error.status_code)
        if error.status_code == 405:
            # Every route of the path, not only the first one matched, says which methods it takes.
            allowed = sorted({method for route in routes if route.matches(request.scope)[0] != Match.NONE for method in route.methods or ()})
            answer.headers["Allow"] = ", ".join(allowed)
        return answer

    async def unexpected(request: Request, error: Exception) -> Response:
        # Never a traceback to a client: the service's own log has it.
        return _json({"error": "InternalError", "detail": "the job service failed on this request; its log says why"}, 500)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await service.changes.start()
        try:
            yield
        finally:
            await service.changes.stop()

    job = "/jobs/{job_id}"
    routes = [
        Route("/", index, methods=["GET"]),
        Route("/openapi.json", openapi, methods=["GET"]),
        Route("/jobs", list_jobs, methods=["GET"]),
        Route("/jobs", submit, methods=["POST"]),
        Route(job, get_job, methods=["GET"]),
        Route(job, set_job, methods=["PUT"]),
        Route(job, delete_job, methods=["DELETE"]),
        Route(job + "/status", status, methods=["GET"]),
        Route(job + "/history", history, methods=["GET"]),
        Route(job + "/wait", wait, methods=["GET"]),
        Route(job + "/cancel", action(store.cancel_job), methods=["POST"]),
        Route(job + "/retry", action(store.retry_job), methods=["POST"]),
        Route(job + "/heartbeat", action(store.heartbeat, ("lease", "worker")), methods=["POST"]),
        Route(job + "/progress", action(store.set_job_progress, ("completed", "total"), ("completed",)), methods=["POST"]),
        Route(job + "/messages", action(store.append_job_message, ("text",), ("text",)), methods=["POST"]),
        Route(job + "/result", action(store.update_job_result, ("result", "inputJob"), ("result",), result="data", inputJob="input_job"), methods=["POST"]),
        Route(job + "/fail", action(store.fail_job, ("message", "retry")), methods=["POST"]),
        Route(job + "/release", action(store.release_job, ("reason", "worker")), methods=["POST"]),
        Route("/claims", claim, methods=["POST"]),
        Route("/stats", stats, methods=["GET"]),
        Route("/purge", purge, methods=["POST"]),
        Route("/requeue-expired", requeue, methods=["POST"]),
        Route("/problems", problems, methods=["GET"]),
        Route("/schema", schema, methods=["GET"]),
        Route("/events", events, methods=["GET"]),
        Route("/activity", recent, methods=["GET"]),
        Route("/retries", retry_named, methods=["POST"]),
        Route("/static/{name}", asset, methods=["GET"]),
    ]
    app = Starlette(
        routes=routes,
        exception_handlers={JobStoreError: library_error, HTTPException: http_error, Exception: unexpected},
        lifespan=lifespan,
    )
    guarded = Guard(app, token=token, public_read=public_read, hosts=hosts, max_body=max_body)
    guarded.service = service
    return guarded


"""The ``jobstore`` command: each subcommand is one JobStore call, shown for a person or as JSON."""

from __future__ import annotations

import json
import os
import socket
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, TextIO

import click
from rich.console import Console
from rich.live import Live
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.text import Text

from .. import _schedule
from .._errors import InvalidArgumentError, InvalidJobError, JobNotFoundError, JobStoreError, WaitTimeout
from .._lifecycle import FINAL_STATES, statistics
from .._schema import JobSchema
from .._status import STATES, JobStatus
from .._store import DATABASE_SCHEMES, JobStore, seconds
from .._version import __version__
from ._render import WAITING, job_detail, job_lines, parse_duration, statistics_lines

if TYPE_CHECKING:  # the client needs httpx, an extra: imported only when --url is given
    from ..client import JobClient

#: The variable holding the job service's token, for the server and for --url alike.
TOKEN_VARIABLE = "JOBSTORE_TOKEN"

#: Exit statuses beyond 0: 1 for an error (or, for ``wait``, a job that ended in error), 2 for
#: a bad command line, 3 when ``claim`` finds no job waiting, 4 when ``wait`` times out, 130 when
#: interrupted. A script tells "nothing to do" and "not yet" from a failure by the status alone.
FAILED, NOTHING_TO_CLAIM, TIMED_OUT, INTERRUPTED = 1, 3, 4, 130

out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)  # a line is never broken: a store URL stays whole


class Opener:
    """The store the command was pointed at, opened on first use: a directory (only ``create`` and
    ``serve`` make a new one), or a job service's URL.

    :param path: the store's directory
    :param url: the job service's address, which stands for the store when given
    """

    def __init__(self, location: str, url: str | None = None) -> None:
        self.location = location
        self.path = Path(location)
        self.url = url

    @property
    def where(self) -> str:
        """The store as the command's messages name it."""
        return self.url or self.location

    def open(self, create: bool = False) -> JobStore | JobClient:
        if self.url is not None:
            return remote(self.url)
        # The store itself refuses a directory of other files (the default ./jobstore may be a source tree).
        if self.location.startswith(DATABASE_SCHEMES):
            return JobStore(self.location)  # made on first use, as the database's tables are
        if not create and not (self.path / ".jobstore").is_dir():
            raise click.ClickException(f"no job store at {self.path} (give --store PATH or set JOBSTORE_PATH)")
        return JobStore(self.path)

    def refuse_url(self, command: str) -> None:
        """Refuse a command that cannot work through a service, when --url was given."""
        if self.url is not None:
            raise click.UsageError(f"{command} works on a store's directory, not through --url")

    def local(self, command: str, create: bool = False) -> JobStore:
        """The store as a directory, for a command that cannot work through a service."""
        self.refuse_url(command)
        store = self.open(create)
        assert isinstance(store, JobStore)
        return store


def remote(url: str) -> JobClient:
    """The client of the job service at ``url``, with the token of ``JOBSTORE_TOKEN`` when set."""
    try:
        from ..client import JobClient
    except ImportError:
        raise click.ClickException("--url needs the client extra: pip install 'jobstore[client]'") from None
    return JobClient(url, os.environ.get(TOKEN_VARIABLE) or None)


def store(context: click.Context, create: bool = False) -> JobStore | JobClient:
    opener: Opener = context.obj  # set by the group, inherited by every subcommand's context
    return opener.open(create)


def print_json(value: Any) -> None:
    click.echo(json.dumps(value, indent=2, ensure_ascii=False))


def duration(context: click.Context, parameter: click.Parameter, value: str | None) -> float | None:
    """A click callback: a duration option's seconds."""
    if value is None:
        return None
    try:
        return parse_duration(value)
    except ValueError as error:
        raise click.BadParameter(str(error)) from None


def span_of_seconds(positive: bool = False) -> Callable[[click.Context, click.Parameter, float | None], float | None]:
    """A click callback checking a number of seconds as the API does, so a bad one is a bad command line.

    :param positive: zero is refused too
    """

    def check(context: click.Context, parameter: click.Parameter, value: float | None) -> float | None:
        if value is None:
            return None
        try:
            return seconds(parameter.name or "seconds", value, positive=positive)
        except InvalidArgumentError as error:
            raise click.BadParameter(str(error)) from None

    return check


def scheduling(field: str, parse: Callable[[str], Any] | None = None) -> Callable[[click.Context, click.Parameter, Any], Any]:
    """A click callback checking a scheduling option as the store checks its field, so a bad value is a bad command line, not a failed submission.

    :param field: the field as the schema names it (or ``delay``, which becomes ``runAt``)
    :param parse: turns the option's text into the value given to the store
    :returns: the value to give ``create_job``: a time as the store writes it, for ``runAt``
    """

    def check(context: click.Context, parameter: click.Parameter, value: Any) -> Any:
        if value is None or value == ():
            return None  # a repeatable option given no times is not given
        given = parse(value) if parse is not None else value
        try:
            settled = _schedule.settle("new job", {}, given) if field == "delay" else _schedule.settle("new job", {field: given})
        except InvalidJobError as error:
            raise click.BadParameter("; ".join(message for _, message in error.problems)) from None
        return given if field == "delay" else settled.get(field, given)

    return check


def seconds_text(text: str) -> float:
    """Seconds in a duration option's text, a bad one a bad command line."""
    try:
        return parse_duration(text)
    except ValueError as error:
        raise click.BadParameter(str(error)) from None


def unended_holders(jobs: JobStore | JobClient, key: str) -> set[str]:
    """The ids of the jobs not yet ended that hold ``key``: the store hands one of them back instead of a new job."""
    unended = (JobStatus.IDLE, JobStatus.PENDING, JobStatus.RUNNING)
    return {job["id"] for state in unended for job in jobs.get_jobs(state) if job.get("key") == key}


def ended(job: Mapping[str, Any]) -> str:
    """What became of a job a worker let go: the line ``finish``, ``fail`` and ``release`` print."""
    if job.get("status") == JobStatus.PENDING:
        return f"job {job['id']} is pending again"
    if job.get("canceled"):
        return f"job {job['id']} canceled"
    return f"job {job['id']} {'finished' if job.get('status') == JobStatus.FINISHED else 'failed'}"


@click.group(
    context_settings={"help_option_names": ["-h", "--help"]},
    epilog="Exit statuses: 0 done, 1 an error (for wait, the job ended in error), 2 a bad command line, "
    "3 no job to claim, 4 wait timed out, 130 interrupted.",
)
@click.option(
    "--store",
    "path",
    envvar="JOBSTORE_PATH",
    default="jobstore",
    show_default=True,
    metavar="PATH",
    help="The store's directory (or postgresql://user@host/db#name for a store in a database); JOBSTORE_PATH when not given.",
)
@click.option(
    "--url",
    envvar="JOBSTORE_URL",
    metavar="URL",
    help="A job service (jobstore serve) to work through instead of a directory; JOBSTORE_URL when not given. "
    "Its token, when it asks one, comes from JOBSTORE_TOKEN.",
)
@click.version_option(__version__, "-V", "--version", prog_name="jobstore")
@click.pass_context
def cli(context: click.Context, path: str, url: str | None) -> None:
    """Inspect and steer a jobstore store: its jobs are plain JSON files in one directory."""
    context.obj = Opener(path, url)


@cli.command()
@click.argument("name")
@click.option("--user", default="", help="Who submits it.")
@click.option("--request", default="", help="What the job is to do.")
@click.option("--delay", callback=scheduling("delay", seconds_text), metavar="AGE", help="Claimed no sooner than this long from now (90s, 15m, 12h, 7d, 2w).")
@click.option("--run-at", callback=scheduling("runAt"), metavar="TIME", help="Claimed no sooner than this ISO 8601 time (UTC unless it gives an offset).")
@click.option("--priority", type=int, callback=scheduling("priority"), metavar="N", help="Due jobs of higher priority are claimed first (default 0).")
@click.option("--max-retries", type=click.IntRange(min=0), callback=scheduling("maxRetries"), metavar="N", help="Failures that send it back to pending, after a backoff, before one ends it in error.")
@click.option("--retry-backoff", callback=scheduling("retryBackoff", seconds_text), metavar="SECONDS", help="How long its first retry waits (90, 30s, 5m); each further one twice as long.")
@click.option("--depends-on", multiple=True, callback=scheduling("dependsOn"), metavar="ID", help="A job that must finish before this one is claimed (repeatable).")
@click.option("--key", callback=scheduling("key"), metavar="KEY", help="While a job with this key has not ended, print that job's id instead of submitting another.")
@click.pass_context
def create(
    context: click.Context,
    name: str,
    user: str,
    request: str,
    delay: float | None,
    run_at: str | None,
    priority: int | None,
    max_retries: int | None,
    retry_backoff: float | None,
    depends_on: list[str] | None,
    key: str | None,
) -> None:
    """Submit a pending job (making the store if needed); print its id."""
    if delay is not None and run_at is not None:
        raise click.UsageError("give --delay or --run-at, not both")
    jobs = store(context, create=True)
    # The store hands back the holder of a key as it would a new job: only its id tells them apart.
    held = unended_holders(jobs, key) if key is not None else set()
    job = jobs.create_job(
        name,
        user,
        request,
        run_at=run_at,
        delay=delay,
        priority=priority,
        max_retries=max_retries,
        retry_backoff=retry_backoff,
        depends_on=depends_on,
        key=key,
    )
    click.echo(job["id"])
    if job["id"] in held:
        err.print(f"job {job['id']} holds key {key}; not submitted again", markup=False)


@cli.command("list")
@click.option("--state", type=click.Choice([state.value for state in STATES]), help="Only the jobs in this state.")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array of the documents.")
@click.pass_context
def list_jobs(context: click.Context, state: str | None, as_json: bool) -> None:
    """List the jobs, state by state, each state's in the order they entered it."""
    source = store(context)
    jobs = source.get_jobs(state)
    if as_json:
        print_json(jobs)
    elif jobs:
        finished = {job["id"] for job in jobs if job.get("status") == JobStatus.FINISHED}
        if state is not None and state != JobStatus.FINISHED and any(job.get("status") in WAITING and _schedule.depends_on(job) for job in jobs):
            # What a waiting job waits on is told by the finished jobs, which this listing did not read.
            finished = {job["id"] for job in source.get_jobs(JobStatus.FINISHED)}
        click.echo("\n".join(job_lines(jobs, finished)))
    else:
        click.echo(f"no jobs{f' in {state}' if state else ''}")


@cli.command()
@click.argument("job_id", metavar="ID")
@click.option("--json", "as_json", is_flag=True, help="Print the document as JSON.")
@click.pass_context
def show(context: click.Context, job_id: str, as_json: bool) -> None:
    """Show one job: every field, its messages and its history."""
    job, _ = store(context).find_job(job_id)
    if job is None:
        raise JobNotFoundError(job_id)
    if as_json:
        print_json(job)
    else:
        click.echo(job_detail(job))


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print a JSON object.")
@click.pass_context
def stats(context: click.Context, as_json: bool) -> None:
    """Count the jobs in each state; the oldest pending job's age; jobs finished in the last hour."""
    figures = store(context).stats()
    if as_json:
        print_json(figures)
    else:
        click.echo("\n".join(statistics_lines(figures)))


@cli.command()
@click.argument("job_id", metavar="ID")
@click.option("--timeout", type=float, callback=span_of_seconds(), metavar="S", help="Give up after this many seconds (exit 4).")
@click.pass_context
def wait(context: click.Context, job_id: str, timeout: float | None) -> int:
    """Follow a job's progress until it ends: exit 0 when finished, 1 in error, 4 on timeout."""
    jobs = store(context)
    if jobs.find_job(job_id)[0] is None:
        raise JobNotFoundError(job_id)  # before the bar is drawn, so the error stays one line
    deadline = None if timeout is None else time.monotonic() + timeout
    columns = [TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[status]}"), TimeElapsedColumn()]
    with Progress(*columns, console=err, transient=False) as bar:
        task = bar.add_task(job_id, total=None, status="")
        while True:
            job, state = jobs.find_job(job_id)
            if job is None or state is None:
                raise JobNotFoundError(job_id)
            reported = job.get("progress") or {}
            bar.update(task, completed=reported.get("completed") or 0, total=reported.get("total"), status=state.value)
            if state in FINAL_STATES:
                break
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                err.print(f"job {job_id} is still {state.value} after {timeout:g} s")
                return TIMED_OUT
            try:
                jobs.block_until_complete(job_id, timeout=0.5 if left is None else min(0.5, left))
            except WaitTimeout:
                pass  # look at the progress again
    if state is JobStatus.FINISHED:
        click.echo(f"job {job_id} finished")
        return 0
    last = (job.get("messages") or "").splitlines()
    click.echo(f"job {job_id} ended in error{': ' + last[-1] if last else ''}")
    return FAILED


@cli.command()
@click.option("--worker", metavar="W", help="Who claims it; by default this host and the pid of the process that ran the command.")
@click.option("--lease", type=float, callback=span_of_seconds(positive=True), metavar="S", help="Seconds the claim lasts; by default the store's.")
@click.option("--wait", type=float, callback=span_of_seconds(), metavar="S", help="Wait this many seconds for a job to be submitted.")
@click.option("--json", "as_json", is_flag=True, help="Print the job as JSON.")
@click.pass_context
def claim(context: click.Context, worker: str | None, lease: float | None, wait: float | None, as_json: bool) -> int:
    """Claim the job that has waited longest: print its id on a line, then the job; exit 3 when none waits."""
    if worker is None:
        # The command's own pid dies with it; the script that runs it is the worker.
        worker = f"{socket.gethostname()}:{os.getppid()}"
    elif not worker:
        raise click.BadParameter("a worker is a non-empty name", param_hint="'--worker'")
    job = store(context).claim_job(worker, lease, wait)
    if job is None:
        err.print("no job waits to be claimed", markup=False)
        return NOTHING_TO_CLAIM
    if as_json:
        print_json(job)
    else:
        click.echo(f"{job['id']}\n{job_detail(job)}")
    return 0


@cli.command()
@click.argument("job_id", metavar="ID")
@click.argument("completed", metavar="N", type=click.IntRange(min=0))
@click.argument("total", type=click.IntRange(min=0), required=False)
@click.pass_context
def progress(context: click.Context, job_id: str, completed: int, total: int | None) -> None:
    """Record that N steps of the job (of TOTAL, when given) are done; prints nothing."""
    if total is not None and completed > total:
        raise click.BadParameter(f"{completed} steps done is more than the total, {total}", param_hint="'TOTAL'")
    store(context).set_job_progress(job_id, completed, total)


@cli.command("message")
@click.argument("job_id", metavar="ID")
@click.argument("text")
@click.pass_context
def add_message(context: click.Context, job_id: str, text: str) -> None:
    """Add a line to the job's messages; prints nothing."""
    store(context).append_job_message(job_id, text)


@cli.command()
@click.argument("job_id", metavar="ID")
@click.option("--result", default="", metavar="R", help="The job's result (empty when not given).")
@click.pass_context
def finish(context: click.Context, job_id: str, result: str) -> None:
    """Store the job's result and move it to finished."""
    click.echo(ended(store(context).update_job_result(job_id, result)))


@cli.command()
@click.argument("job_id", metavar="ID")
@click.option("--message", default="", metavar="M", help="Why, added to the job's messages.")
@click.option("--no-retry", is_flag=True, help="End it in error now, whatever retries it has left.")
@click.pass_context
def fail(context: click.Context, job_id: str, message: str, no_retry: bool) -> None:
    """Move a job that has not ended to error; a running one with retries left goes back to pending, due after its backoff."""
    job = store(context).fail_job(job_id, message, retry=not no_retry)
    if job.get("status") == JobStatus.PENDING:
        last = (job.get("messages") or "").splitlines()
        click.echo(f"job {job['id']} will be retried{': ' + last[-1] if last else ''}")
    else:
        click.echo(ended(job))


@cli.command()
@click.argument("job_id", metavar="ID")
@click.option("--reason", default="", metavar="R", help="Why, added to the job's messages.")
@click.pass_context
def release(context: click.Context, job_id: str, reason: str) -> None:
    """Hand a running job back to pending, its claim not counted; one asked to stop ends canceled."""
    click.echo(ended(store(context).release_job(job_id, reason)))


@cli.command()
@click.argument("job_id", metavar="ID")
@click.pass_context
def cancel(context: click.Context, job_id: str) -> None:
    """Cancel a job: one not yet running ends in error; a running one is asked to stop."""
    job = store(context).cancel_job(job_id)
    if job["status"] == JobStatus.RUNNING:
        click.echo(f"job {job_id} is running: asked its worker to stop")
    else:
        click.echo(f"job {job_id} canceled")


@cli.command()
@click.argument("job_id", metavar="ID")
@click.pass_context
def retry(context: click.Context, job_id: str) -> None:
    """Run a finished or failed job again: back to pending."""
    store(context).retry_job(job_id)
    click.echo(f"job {job_id} is pending again")


@cli.command()
@click.argument("job_id", metavar="ID")
@click.pass_context
def delete(context: click.Context, job_id: str) -> None:
    """Remove a job from the store."""
    jobs = store(context)
    if jobs.find_job(job_id)[0] is None:
        raise JobNotFoundError(job_id)
    jobs.delete_job(job_id)
    click.echo(f"job {job_id} deleted")


@cli.command("requeue-expired")
@click.pass_context
def requeue_expired(context: click.Context) -> None:
    """Recover running jobs whose worker's lease expired; print their ids."""
    recovered = store(context).requeue_expired_jobs()
    click.echo("\n".join(recovered) if recovered else "no expired claims")


@cli.command()
@click.option("--state", type=click.Choice(["finished", "error"]), default="finished", show_default=True)
@click.option("--older-than", callback=duration, metavar="AGE", help="Remove jobs last changed longer ago (90s, 15m, 12h, 7d, 2w).")
@click.option("--keep-last", type=click.IntRange(min=0), metavar="N", help="Keep the N jobs that entered the state last.")
@click.pass_context
def purge(context: click.Context, state: str, older_than: float | None, keep_last: int | None) -> None:
    """Remove old finished or error jobs, by age, by count, or both."""
    if older_than is None and keep_last is None:
        raise click.UsageError("give --older-than, --keep-last or both")
    removed = store(context).purge_jobs(state, older_than, keep_last)
    click.echo(f"purged {removed} {state} job{'s' if removed != 1 else ''}")


@cli.command()
@click.pass_context
def validate(context: click.Context) -> int:
    """Check the store (its files, or its tables) and every document against the layout and the schema; exit 1 if anything is wrong."""
    jobs = store(context)
    problems = jobs.check()
    for problem in problems:
        click.echo(str(problem))
    if problems:
        err.print(f"{len(problems)} problem{'s' if len(problems) != 1 else ''} in {context.obj.where}")
        return FAILED
    click.echo(f"no problems in {context.obj.where}")
    return 0


@cli.command()
@click.option(
    "--set",
    "new",
    type=click.File("rb"),
    help="Record this JSON Schema file (- for stdin) as the store's, once every job passes it (making the store if needed).",
)
@click.pass_context
def schema(context: click.Context, new: BinaryIO | None) -> None:
    """Print the store's job schema: the one it records, else the published one."""
    if new is None:
        print_json(store(context).job_schema().document)
        return
    context.obj.refuse_url("schema --set")
    try:
        document = json.loads(new.read())
    except (ValueError, UnicodeDecodeError) as error:
        raise click.BadParameter(f"{new.name} is not JSON: {error}", param_hint="--set") from None
    JobSchema(document)  # a schema refused here leaves no new store behind
    jobs = context.obj.local("schema --set", create=True)
    jobs.change_schema(document)
    click.echo(f"recorded the schema of {new.name} for {jobs.location}")


@cli.command()
@click.option("--interval", type=click.FloatRange(min=0.05), default=1.0, show_default=True, help="Seconds between refreshes.")
@click.pass_context
def watch(context: click.Context, interval: float) -> None:
    """A live view of the counts and the running jobs, until Ctrl-C."""
    jobs = store(context)

    def view() -> Text:
        everything = jobs.get_jobs()
        running = [job for job in everything if job.get("status") == JobStatus.RUNNING]
        lines = [*statistics_lines(statistics(everything)), "", f"running ({len(running)})", *job_lines(running)]
        return Text("\n".join(lines))

    try:
        with Live(view(), console=out, auto_refresh=False) as live:
            while True:
                time.sleep(interval)
                live.update(view(), refresh=True)
    except KeyboardInterrupt:
        pass  # Ctrl-C is how a watch ends, not a failure


@cli.command()
@click.option("--from", "source", required=True, metavar="STORE", help="The store to copy: a directory or a postgresql:// URL.")
@click.option("--to", "target", required=True, metavar="STORE", help="The store to copy into, holding no job (made if needed).")
def migrate(source: str, target: str) -> None:
    """Copy every job of one store into another, between directories and databases: all or nothing, each document checked."""
    if not source.startswith(DATABASE_SCHEMES) and not (Path(source) / ".jobstore").is_dir():
        raise click.ClickException(f"no job store at {source}")
    copied = JobStore(target).copy_from(JobStore(source))
    click.echo(f"copied {copied} job{'s' if copied != 1 else ''} from {source} to {target}")


@cli.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="The address to listen on; any but a loopback one needs a token (or --insecure).")
@click.option("--port", type=click.IntRange(0, 65535), default=8765, show_default=True, help="The port; 0 takes a free one.")
@click.option("--token-file", type=click.File("r"), help="A file holding the bearer token writes (and reads) need; JOBSTORE_TOKEN when not given.")
@click.option("--public-read", is_flag=True, help="Reads need no token.")
@click.option("--insecure", is_flag=True, help="Listen beyond this machine without a token.")
@click.option("--max-body", type=click.IntRange(min=1), default=1 << 20, show_default=True, metavar="BYTES", help="The largest request body taken.")
@click.option("--allow-host", "allow_hosts", multiple=True, metavar="NAME", help="Another name the service answers to in the Host header (repeatable).")
@click.pass_context
def serve(
    context: click.Context, host: str, port: int, token_file: TextIO | None, public_read: bool, insecure: bool, max_body: int, allow_hosts: tuple[str, ...]
) -> None:
    """Serve the store over HTTP (the job service) until Ctrl-C; makes the store if needed."""
    try:
        from ..server import serve as run
    except ImportError:
        raise click.ClickException("the job service needs the server extra: pip install 'jobstore[server]'") from None
    token = token_file.read().strip() if token_file is not None else os.environ.get(TOKEN_VARIABLE) or None
    jobs = context.obj.local("serve", create=True)

    def ready(url: str) -> None:
        click.echo(f"serving {jobs.location} at {url}{'' if token else ' (no token: writes are open to this machine)'}", err=False)

    run(jobs, host=host, port=port, token=token, public_read=public_read, insecure=insecure, max_body=max_body, allow_hosts=allow_hosts, ready=ready)


def main(argv: Sequence[str] | None = None) -> None:
    """Run the command; every error is one line on stderr and a non-zero exit, never a traceback."""
    try:
        status = cli.main(args=argv, prog_name="jobstore", standalone_mode=False)
    except click.ClickException as error:
        err.print(f"jobstore: {error.format_message()}", markup=False, soft_wrap=True)
        status = error.exit_code
    except (JobStoreError, OSError) as error:
        err.print(f"jobstore: {error}", markup=False, soft_wrap=True)
        status = FAILED
    except (KeyboardInterrupt, click.Abort):
        status = INTERRUPTED
    sys.exit(status if isinstance(status, int) else 0)

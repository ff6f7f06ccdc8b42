"""jobstore end to end: submit jobs, work them, read the results and the files they live in.

Usage: python examples/quickstart.py [STORE_DIRECTORY]   (default: a temporary directory, removed at the end)
"""

from __future__ import annotations

import argparse
import contextlib
import tempfile

from jobstore import InvalidJobError, JobStore
from jobstore.api import job


def walk_through(store: JobStore) -> None:
    """Every step, on the given store."""
    job.useStore(store)
    root = store.path

    # A client submits work: each job starts pending, with a fresh id.
    for word in ["plain", "json", "jobs"]:
        created = job.createJob("uppercase", "quickstart", word, "")
        print(f"submitted {created['id']}  request={created['request']!r}")

    # A worker takes the pending jobs in order, marks each running, and stores its result.
    for pending in job.getPendingJobs():
        job.setJobRunning(pending["id"], {"messages": "uppercasing"})
        if pending["request"] == "jobs":
            job.setJob(pending["id"], {"messages": "refused: too plural"}, "error")
            continue
        job.updateJobResult(pending["id"], pending["request"].upper())

    for finished in job.getFinishedJobs():
        print(f"finished  {finished['id']}  result={finished['result']!r}")
    for failed in job.getErrorJobs():
        print(f"error     {failed['id']}  messages={failed['messages']!r}")

    # Every write is checked against the schema: a typo never reaches the files.
    try:
        job.setJob(failed["id"], {"mesages": "typo"}, "error")
    except InvalidJobError as error:
        print(f"rejected: {error}")

    # The files are plain JSON, one per state, in TinyDB's layout. They follow the log within a
    # second; flush() writes them now, before they are read by other means than jobstore.
    store.flush()
    for path in sorted(root.glob("*.json")):
        print(f"\n{path.name}:\n{path.read_text(encoding='utf-8').rstrip()}")

    counts = {state: len(jobs) for state, jobs in [("finished", job.getFinishedJobs()), ("error", job.getErrorJobs())]}
    assert counts == {"finished": 2, "error": 1}, counts
    print(f"\nok: {counts['finished']} finished, {counts['error']} error")


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("store", nargs="?", help="store directory (default: a temporary one, removed at the end)")
    args = parser.parse_args()
    with contextlib.ExitStack() as stack:
        directory = args.store or stack.enter_context(tempfile.TemporaryDirectory(prefix="jobstore-quickstart-"))
        store = stack.enter_context(JobStore(directory))  # closed before a temporary directory goes
        print(f"store: {directory}" + ("" if args.store else " (temporary, removed at the end)"))
        walk_through(store)


if __name__ == "__main__":
    main()

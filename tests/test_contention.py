"""Contention: processes and threads doing a random mix of every operation; the store equals their logs.

The jobs they submit carry priorities, delays, retries, shared keys and dependencies, so the
logs also show that no job was claimed early and no key was held twice (see contention.py).
"""

from __future__ import annotations

import os
import threading

from jobstore import JobStore

from contention import Mixer, reconcile
from stress import contend

#: How long the contending processes run; ``python -m tests.stress`` runs them longer.
SECONDS = float(os.environ.get("JOBSTORE_CONTENTION_SECONDS", "4"))


def test_eight_processes_doing_everything_at_once_leave_what_their_logs_say(tmp_path):
    figures = contend(tmp_path / "store", processes=8, seconds=SECONDS, seed=1)
    assert figures["operations"] > 8 * 20 and figures["claims"] > 0 and figures["refused"] > 0
    # The scheduling rules had work to do: keys met their holders, failures reached dependents.
    assert figures["submissions answered by a key's holder"] > 0 and figures["jobs ended by a dependency"] > 0


def test_threads_sharing_one_store_doing_everything_leave_what_their_logs_say(root):
    store = JobStore(root)
    logs: list[list[dict]] = [[] for _ in range(8)]
    failures: list[BaseException] = []

    def mix(number: int) -> None:
        try:
            logs[number].extend(Mixer(store, seed=100 + number, tag=f"t{number}").run(SECONDS / 2))
        except BaseException as error:  # a thread's failure must fail the test, not vanish with the thread
            failures.append(error)

    threads = [threading.Thread(target=mix, args=(number,)) for number in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []
    assert reconcile(root, logs)["operations"] > 8 * 10

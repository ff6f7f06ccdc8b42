"""The dashboard's first paint with a large store, and the weight of its pages.

Fills a store with jobs (50,000 by default, in every state), serves it with ``jobstore serve`` on
127.0.0.1, and loads the overview, the job list and a job page in Debian's Chromium (driven by
Playwright) several times each, reading the browser's own first-contentful-paint time and the
bytes each page loads (the document, its style sheet and its script, uncompressed). Targets: first
paint under 300 ms, pages under 100 KB.

Usage: python benchmarks/dashboard.py [--jobs 50000] [--loads 7] [--quick]
"""

from __future__ import annotations

import argparse
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from jobstore import JobStore

SCRIPT = Path(sys.executable).with_name("jobstore")
PAGES = {"overview": "/", "job list": "/jobs?f=html", "job page": None}
#: The browser's first-contentful-paint time, in ms from the start of navigation (it may be
#: reported a frame after the load event).
FIRST_PAINT = """new Promise((resolve) => new PerformanceObserver((list) => {
  const entry = list.getEntriesByName("first-contentful-paint")[0];
  if (entry) resolve(entry.startTime);
}).observe({type: "paint", buffered: true}))"""


def fill(root: Path, count: int) -> str:
    """Submit ``count`` jobs and move some through every state; return the id of a finished one."""
    store = JobStore(root, durable=False)  # the figures are about reading, not about writing them
    batch = 5_000
    for start in range(0, count, batch):
        store.create_jobs([{"name": f"job-{n % 7}", "user": f"user-{n % 3}", "request": str(n)} for n in range(start, min(count, start + batch))])
    finished = ""
    for n in range(min(200, count)):
        claimed = store.claim_job(f"worker-{n % 4}")
        assert claimed is not None
        store.set_job_progress(claimed["id"], 1, 2)
        if n % 5 == 0:
            store.fail_job(claimed["id"], "disk full")
        elif n % 5 != 1:
            finished = store.update_job_result(claimed["id"], "done")["id"]
    store.close()
    return finished


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=50_000)
    parser.add_argument("--loads", type=int, default=7, help="loads of each page (the first, cold, is not counted)")
    parser.add_argument("--quick", action="store_true", help="2,000 jobs, 3 loads: a check that it runs")
    args = parser.parse_args()
    if args.quick:
        args.jobs, args.loads = 2_000, 3
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        sys.exit("Chromium is not installed: apt-get install chromium")
    from playwright.sync_api import sync_playwright

    work = Path(tempfile.mkdtemp(prefix="jobstore-dashboard-"))
    server = None
    try:
        started = time.perf_counter()
        finished = fill(work / "store", args.jobs)
        print(f"store: {args.jobs:,} jobs in {time.perf_counter() - started:.1f} s", file=sys.stderr)
        server = subprocess.Popen([str(SCRIPT), "--store", str(work / "store"), "serve", "--port", "0"], stdout=subprocess.PIPE, text=True)
        assert server.stdout is not None
        url = server.stdout.readline().split(" at ", 1)[1].split()[0]
        PAGES["job page"] = f"/jobs/{finished}"
        rows = []
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(
                executable_path=chromium,
                args=["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run"],
            )
            for title, path in PAGES.items():
                paints, weights = [], []
                for load in range(args.loads):
                    context = browser.new_context(viewport={"width": 1280, "height": 900}, bypass_csp=True)
                    page = context.new_page()
                    sizes: list[int] = []
                    page.on("response", lambda response: sizes.append(len(response.body())) if response.ok else None)
                    page.goto(url + str(path), wait_until="load")
                    paint = page.evaluate(FIRST_PAINT)
                    if load:  # the first load warms the service's listing and the browser
                        paints.append(paint)
                        weights.append(sum(sizes))
                    context.close()
                rows.append((title, statistics.median(paints), max(paints), max(weights)))
            browser.close()
        print(f"\ndashboard, {args.jobs:,} jobs in the store, {args.loads - 1} warm loads per page (Chromium, 127.0.0.1)")
        print(f"{'page':<10} {'first paint p50':>16} {'max':>8} {'page weight':>12}")
        for title, median, most, weight in rows:
            print(f"{title:<10} {median:>13.0f} ms {most:>5.0f} ms {weight / 1024:>9.1f} KB")
        print("targets: first paint under 300 ms, pages under 100 KB")
    finally:
        if server is not None:
            server.send_signal(signal.SIGINT)
            try:
                server.wait(timeout=15)
            except subprocess.TimeoutExpired:
                server.kill()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()

"""The dashboard in a real browser (Debian's Chromium, driven by Playwright) against the real service."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from playwright.sync_api import expect, sync_playwright

from jobstore import JobStore

from conftest import Service

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
#: Where the README's screenshots are written when this is set (to a directory), else nowhere.
SCREENSHOTS = os.environ.get("JOBSTORE_SCREENSHOTS")


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if CHROMIUM is None:
        pytest.skip("Chromium is not installed: apt-get install chromium (Debian's package) to run the dashboard tests")
    with sync_playwright() as playwright:
        # The flags keep Chromium off the network it would otherwise reach for at start-up.
        launched = playwright.chromium.launch(
            executable_path=CHROMIUM,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run"],
        )
        yield launched
        launched.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    opened = context.new_page()
    opened.dialogs = []  # every dialog the page opened, in order (alert, confirm)
    opened.on("dialog", lambda dialog: (opened.dialogs.append((dialog.type, dialog.message)), dialog.accept()))
    yield opened
    context.close()


def seed(store: JobStore) -> dict[str, dict]:
    """Four jobs: a resize running at 1 of 4, a thumb failed, a resize and a hostile name pending."""
    made = {}
    for key, name in (("running", "resize"), ("failed", "thumb"), ("pending", "resize"), ("hostile", "<img src=x onerror=alert(1)>")):
        made[key] = store.create_job(name, "ann", "r", "")
        time.sleep(0.002)
    store.claim_job("worker-1")
    store.set_job_progress(made["running"]["id"], 1, 4)
    store.claim_job("worker-2")
    store.fail_job(made["failed"]["id"], "disk full")
    return made


def test_the_overview_counts_change_live_when_a_worker_finishes(page, service, store):
    made = seed(store)
    page.goto(service.url + "/")
    assert page.locator("[data-count=running]").inner_text() == "1"
    assert page.locator("[data-count=finished]").inner_text() == "0"
    assert page.locator("#running tbody tr").count() == 1
    expect(page.locator("body")).to_have_attribute("data-following", "yes", timeout=10_000)
    finish = "import sys; from jobstore import JobStore; JobStore(sys.argv[1]).update_job_result(sys.argv[2], 'done')"
    subprocess.run([sys.executable, "-c", finish, str(service.root), made["running"]["id"]], check=True, timeout=60)
    expect(page.locator("[data-count=finished]")).to_have_text("1", timeout=10_000)
    expect(page.locator("[data-count=running]")).to_have_text("0")
    expect(page.locator("#running tbody tr")).to_have_count(0)
    assert "1 finished, 1 failed" in page.locator("#activity-total").inner_text()
    if SCREENSHOTS:
        page.screenshot(path=str(Path(SCREENSHOTS) / "overview.png"), full_page=True)


def test_the_list_filters_and_each_error_shows_its_message(page, service, store):
    seed(store)
    page.goto(service.url + "/jobs?f=html")
    assert page.locator("#jobs tbody tr").count() == 4
    page.select_option("select[name=state]", "pending")
    page.fill("input[name=name]", "resize")
    page.click("form.filters button[type=submit]")
    page.wait_for_url("**/jobs?*state=pending*")
    assert page.locator("#jobs tbody tr").count() == 1  # the first resize runs, the second waits
    page.select_option("select[name=state]", "error")
    page.fill("input[name=name]", "")
    page.click("form.filters button[type=submit]")
    page.wait_for_url("**state=error**")
    row = page.locator("#jobs tbody tr.error")
    assert row.count() == 1
    assert "disk full" in row.inner_text() and "failed" in row.inner_text() and "ago" in row.inner_text()


def test_the_list_pages_by_cursor(page, service, store):
    store.create_jobs([{"name": f"n{n}"} for n in range(55)])
    page.goto(service.url + "/jobs?f=html&order=oldest")
    assert page.locator("#jobs tbody tr").count() == 50
    page.click("a[rel=next]")
    page.wait_for_url("**cursor=**")
    assert page.locator("#jobs tbody tr").count() == 5
    assert page.locator("a[rel=next]").count() == 0


def test_a_job_opens_and_is_canceled_retried_and_deleted_by_its_buttons(page, service, store):
    made = seed(store)
    page.goto(service.url + "/jobs?f=html")
    page.click(f"a[href='/jobs/{made['pending']['id']}']")
    page.wait_for_url(f"**/jobs/{made['pending']['id']}")
    assert "pending" in page.locator("h1").inner_text()
    assert page.locator("button[data-action=retry]").count() == 0
    if SCREENSHOTS:
        page.goto(f"{service.url}/jobs/{made['running']['id']}")
        page.screenshot(path=str(Path(SCREENSHOTS) / "job.png"), full_page=True)
        page.goto(f"{service.url}/jobs/{made['pending']['id']}")
    page.click("button[data-action=cancel]")
    expect(page.locator("h1")).to_contain_text("error", timeout=10_000)
    assert store.find_job(made["pending"]["id"])[0]["canceled"] is True
    page.click("button[data-action=retry]")
    expect(page.locator("h1")).to_contain_text("pending", timeout=10_000)
    page.click("button[data-action=delete]")
    assert page.dialogs and page.dialogs[-1][0] == "confirm" and made["pending"]["id"] in page.dialogs[-1][1]
    deadline = time.monotonic() + 10
    while store.find_job(made["pending"]["id"]) != (None, None) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert store.find_job(made["pending"]["id"]) == (None, None)


def test_selected_jobs_and_every_failed_job_of_a_name_are_retried_at_once(page, service, store):
    jobs = store.create_jobs([{"name": "flaky"} for _ in range(3)] + [{"name": "steady"}])
    for _ in jobs:
        claimed = store.claim_job("w")
        store.fail_job(claimed["id"], "broke")
    page.goto(service.url + "/jobs?f=html&state=error")
    page.check(f"input[name=job][value='{jobs[3]['id']}']")
    page.click("button[data-bulk=retry]")
    expect(page.locator("#jobs tbody tr")).to_have_count(3, timeout=10_000)
    assert store.find_job(jobs[3]["id"])[1] == "pending"
    page.fill("#retry-named input[name=name]", "flaky")
    page.click("#retry-named button")
    page.wait_for_selector("text=no job matches", timeout=10_000)
    assert sorted(job["name"] for job in store.get_pending_jobs()) == ["flaky", "flaky", "flaky", "steady"]


def test_a_hostile_job_name_shows_as_text_and_runs_nothing(page, service, store):
    made = seed(store)
    hostile = "<img src=x onerror=alert(1)>"
    for url in ("/", "/jobs?f=html", f"/jobs/{made['hostile']['id']}"):
        page.goto(service.url + url)
    page.goto(service.url + "/jobs?f=html")
    assert page.get_by_text(hostile, exact=True).count() == 1
    page.goto(f"{service.url}/jobs/{made['hostile']['id']}")
    assert page.locator("td", has_text=hostile).count() == 1
    assert page.locator("img").count() == 0
    assert page.dialogs == []


def test_writes_from_the_page_need_the_token_kept_in_the_tab(page, root, tmp_path):
    (tmp_path / "token").write_text("tab-token")
    guarded = Service(root, "--token-file", str(tmp_path / "token"), "--public-read")
    try:
        job = JobStore(root).create_job("j", "u", "r", "")
        page.goto(f"{guarded.url}/jobs/{job['id']}")
        page.click("button[data-action=cancel]")
        expect(page.locator("#notice")).to_contain_text("token", timeout=10_000)
        assert JobStore(root).find_job(job["id"])[1] == "pending"
        page.fill("#token-form input", "tab-token")
        page.click("#token-form button")
        page.click("button[data-action=cancel]")
        expect(page.locator("h1")).to_contain_text("error", timeout=10_000)
        assert page.evaluate("sessionStorage.getItem('jobstore-token')") == "tab-token"
    finally:
        guarded.stop()


def test_the_pages_fit_a_narrow_screen(browser, service, store):
    made = seed(store)
    context = browser.new_context(viewport={"width": 390, "height": 844})
    narrow = context.new_page()
    try:
        for url in ("/", "/jobs?f=html", f"/jobs/{made['running']['id']}"):
            narrow.goto(service.url + url)
            # wide tables scroll inside their box; the page itself never does sideways
            assert narrow.evaluate("document.documentElement.scrollWidth") <= 390, url
            for button in narrow.locator("button").all():
                assert button.inner_text().strip() or button.get_attribute("aria-label"), url
            for field in narrow.locator("input:not([type=hidden]), select").all():
                assert field.evaluate("(node) => !!(node.labels && node.labels.length) || !!node.getAttribute('aria-label')"), url
    finally:
        context.close()


def test_nothing_is_fetched_from_another_host(page, service, store):
    seed(store)
    asked: list[str] = []
    page.on("request", lambda request: asked.append(request.url))
    page.goto(service.url + "/")
    page.goto(service.url + "/jobs?f=html")
    assert asked and all(url.startswith(service.url) or url.startswith("data:") for url in asked), asked


def test_the_list_has_a_schedule_column_only_while_a_listed_job_has_a_plan(page, service, store):
    made = seed(store)
    page.goto(service.url + "/jobs?f=html")
    assert "schedule" not in page.locator("#jobs thead th").all_inner_texts()
    page.goto(f"{service.url}/jobs/{made['pending']['id']}")
    assert page.locator("#schedule").count() == 0

    hostile = "<b>dep"  # no slash: an id with one names no job in a URL
    store.set_job(hostile, {"name": "needed"}, "pending")
    later = store.create_job("later", delay=300, priority=2, max_retries=3, depends_on=[made["running"]["id"], hostile])
    page.goto(service.url + "/jobs?f=html")
    headings = page.locator("#jobs thead th").all_inner_texts()
    assert "schedule" in headings
    row = page.locator("#jobs tbody tr", has=page.locator(f"a[href='/jobs/{later['id']}']"))
    cell = row.locator("td.plan")
    expect(cell.locator("[data-plan=due]")).to_have_text(re.compile(r"^due in [45]m$"))
    assert cell.locator("[data-plan=priority]").inner_text() == "priority 2"
    assert cell.locator("[data-plan=retries]").inner_text() == "3 retries left"
    waits = cell.locator("[data-plan=waits]")
    assert waits.locator("a").all_inner_texts() == [made["running"]["id"], hostile]
    assert page.locator("b").count() == 0 and page.dialogs == []
    # the column lines up: each row has as many cells as the head has headings
    assert {row.locator("td").count() for row in page.locator("#jobs tbody tr").all()} == {len(headings)}
    plain = page.locator("#jobs tbody tr", has=page.locator(f"a[href='/jobs/{made['pending']['id']}']"))
    assert plain.locator("td.plan").inner_text() == ""

    page.goto(f"{service.url}/jobs/{later['id']}")
    schedule = page.locator("#schedule")
    expect(schedule.locator("[data-plan=due]")).to_have_text(re.compile(r"^due in [45]m$"))
    assert schedule.locator("[data-plan=priority]").inner_text() == "priority 2"
    assert schedule.locator("[data-plan=retries]").inner_text() == "3 retries left"
    assert schedule.locator("[data-plan=waits] a").all_inner_texts() == [made["running"]["id"], hostile]
    store.update_job_result(made["running"]["id"], "done")
    page.reload()
    assert page.locator("#schedule [data-plan=waits] a").all_inner_texts() == [hostile]  # a finished dependency waits no more
    page.click(f"#schedule a[href='/jobs/{quote(hostile, safe='')}']")
    page.wait_for_url("**/jobs/*dep*")
    assert hostile in page.locator("h1").inner_text()

    store.delete_job(later["id"])
    page.goto(service.url + "/jobs?f=html")
    assert "schedule" not in page.locator("#jobs thead th").all_inner_texts()

"""Who may use the job service: the token, open reads, the address it listens on, and writes from other sites."""

from __future__ import annotations

import socket
import subprocess

import httpx
import pytest

from jobstore import JobStore, NotAuthorizedError
from jobstore.client import JobClient

from conftest import SCRIPT, Service

TOKEN = "s3cret-token-for-tests"


@pytest.fixture
def guarded(root, tmp_path):
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")
    running = Service(root, "--token-file", str(token_file))
    yield running
    running.stop()


def test_with_a_token_every_request_needs_it(guarded):
    for method, path in (("get", "/jobs"), ("post", "/jobs"), ("get", "/stats")):
        refused = httpx.request(method, guarded.url + path, json={"name": "x"})
        assert refused.status_code == 401, (method, path)
        assert refused.headers["www-authenticate"].startswith("Bearer")
        assert refused.json()["error"] == "NotAuthorizedError"
    wrong = httpx.post(guarded.url + "/jobs", json={"name": "x"}, headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401 and "not the service's" in wrong.json()["detail"]
    right = httpx.post(guarded.url + "/jobs", json={"name": "x"}, headers={"Authorization": f"Bearer {TOKEN}"})
    assert right.status_code == 201
    assert [job["name"] for job in JobStore(guarded.root).get_jobs()] == ["x"]


def test_the_client_sends_its_token_and_a_wrong_one_is_refused(guarded):
    with JobClient(guarded.url, token=TOKEN) as client:
        assert client.createJob("a", "u", "r", "")["status"] == "pending"
    with JobClient(guarded.url, token="wrong") as client, pytest.raises(NotAuthorizedError, match="not the service's"):
        client.getJobs()


def test_public_read_opens_reads_only(root, tmp_path):
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN)
    running = Service(root, "--token-file", str(token_file), "--public-read")
    try:
        assert httpx.get(running.url + "/jobs").status_code == 200
        assert httpx.post(running.url + "/jobs", json={"name": "x"}).status_code == 401
    finally:
        running.stop()


def test_the_token_may_come_from_the_environment(root):
    running = Service(root, env={"JOBSTORE_TOKEN": TOKEN})
    try:
        assert httpx.get(running.url + "/jobs").status_code == 401
        assert httpx.get(running.url + "/jobs", headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 200
    finally:
        running.stop()


def test_listening_beyond_this_machine_needs_a_token_or_insecure(root):
    done = subprocess.run([str(SCRIPT), "--store", str(root), "serve", "--host", "0.0.0.0", "--port", "0"], capture_output=True, text=True, timeout=30)
    assert done.returncode == 1
    assert done.stderr.startswith("jobstore: host must be a loopback address unless a token is given (or --insecure)")
    running = Service(root, "--host", "0.0.0.0", "--insecure")
    try:
        assert httpx.get(running.url.replace("0.0.0.0", "127.0.0.1") + "/stats").status_code == 200
    finally:
        running.stop()


@pytest.mark.parametrize(
    "headers",
    [{"Origin": "http://evil.example"}, {"Origin": "null"}, {"Sec-Fetch-Site": "cross-site"}],
)
def test_no_other_site_can_write_even_without_a_token(service, store, headers):
    job = store.create_job("j", "u", "r", "")
    for method, path in (("post", "/jobs"), ("post", f"/jobs/{job['id']}/cancel"), ("delete", f"/jobs/{job['id']}")):
        answer = httpx.request(method, service.url + path, headers=headers, json={"name": "x"})
        assert answer.status_code == 403, (method, path)
        assert "another site" in answer.json()["detail"]
    assert store.get_jobs() == [job]
    # reading is not refused (a page of another site cannot read the answer anyway)
    assert httpx.get(service.url + "/jobs", headers=headers).status_code == 200


def test_a_page_of_the_service_itself_may_write(service):
    host = service.url.removeprefix("http://")
    answer = httpx.post(service.url + "/jobs", json={"name": "x"}, headers={"Origin": service.url, "Sec-Fetch-Site": "same-origin", "Host": host})
    assert answer.status_code == 201


def test_a_page_reaching_the_service_through_another_name_is_refused(service, store):
    # DNS rebinding: a site points its own name at 127.0.0.1, and its page sends that name.
    headers = {"Host": "evil.example:8765", "Origin": "http://evil.example:8765", "Sec-Fetch-Site": "same-origin"}
    for method, path in (("post", "/jobs"), ("get", "/jobs")):
        answer = httpx.request(method, service.url + path, headers=headers, json={"name": "x"})
        assert answer.status_code == 403 and "not one this service answers to" in answer.json()["detail"]
    assert store.get_jobs() == []
    assert httpx.get(service.url.replace("127.0.0.1", "localhost") + "/stats").status_code == 200


def test_allow_host_names_another_name_the_service_answers_to(root):
    running = Service(root, "--allow-host", "jobs.internal")
    try:
        assert httpx.get(running.url + "/stats", headers={"Host": "jobs.internal:80"}).status_code == 200
        assert httpx.get(running.url + "/stats", headers={"Host": "other.internal"}).status_code == 403
    finally:
        running.stop()


def test_a_body_declared_over_the_limit_is_refused_before_any_route_reads_it(service):
    host, port = service.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as connection:
        connection.sendall(b"DELETE /jobs/x HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 1000000000\r\n\r\n" + b"x" * 1000)
        answer = b""
        while chunk := connection.recv(65536):  # the service closes the connection after answering
            answer += chunk
    head = answer.split(b"\r\n\r\n", 1)[0].decode().lower()
    assert head.startswith("http/1.1 413") and "connection: close" in head

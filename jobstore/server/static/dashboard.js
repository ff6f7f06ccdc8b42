// The dashboard's only script: writes with the token, live counts from /events. Text goes in by
// textContent alone, never as markup, so no job field can become part of the page.
"use strict";

const TOKEN_KEY = "jobstore-token";

function notice(text) {
  document.getElementById("notice").textContent = text;
}

async function send(method, url, body) {
  const headers = { "Content-Type": "application/json" };
  const token = sessionStorage.getItem(TOKEN_KEY);
  if (token) headers["Authorization"] = "Bearer " + token;
  const answer = await fetch(url, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  if (!answer.ok) {
    let detail = answer.statusText;
    try { detail = (await answer.json()).detail; } catch (ignored) { /* not JSON */ }
    if (answer.status === 401) detail += " (enter the service's token above)";
    throw new Error(detail);
  }
  return answer.status === 204 ? null : answer.json();
}

function jobUrl(id, action) {
  return "/jobs/" + encodeURIComponent(id) + (action ? "/" + action : "");
}

async function act(action, ids) {
  if (action === "delete" && !confirm("Delete " + (ids.length === 1 ? "job " + ids[0] : ids.length + " jobs") + "? This cannot be undone.")) return;
  const failed = [];
  for (const id of ids) {
    try {
      if (action === "delete") await send("DELETE", jobUrl(id));
      else await send("POST", jobUrl(id, action), {});
    } catch (error) {
      failed.push(id + ": " + error.message);
    }
  }
  if (failed.length) notice(failed.join("; "));
  else location.reload();
}

function setUpToken() {
  const form = document.getElementById("token-form");
  if (!form) return;
  const input = form.querySelector("input");
  input.value = sessionStorage.getItem(TOKEN_KEY) || "";
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    if (input.value) sessionStorage.setItem(TOKEN_KEY, input.value);
    else sessionStorage.removeItem(TOKEN_KEY);
    notice(input.value ? "token kept for this tab" : "token forgotten");
  });
}

function setUpActions() {
  for (const button of document.querySelectorAll("button[data-action]")) {
    button.addEventListener("click", () => act(button.dataset.action, [button.dataset.id]));
  }
  for (const button of document.querySelectorAll("button[data-bulk]")) {
    button.addEventListener("click", () => {
      const ids = [...document.querySelectorAll("input[name=job]:checked")].map((box) => box.value);
      if (!ids.length) notice("select jobs first");
      else act(button.dataset.bulk, ids);
    });
  }
  const all = document.getElementById("select-all");
  if (all) all.addEventListener("change", () => {
    for (const box of document.querySelectorAll("input[name=job]")) box.checked = all.checked;
  });
  const named = document.getElementById("retry-named");
  if (named) named.addEventListener("submit", async (event) => {
    event.preventDefault();
    const name = named.querySelector("input").value;
    try {
      const done = await send("POST", "/retries", { name });
      notice(done.retried.length + " failed job(s) named " + JSON.stringify(name) + " sent back to pending");
      setTimeout(() => location.reload(), 600);
    } catch (error) {
      notice(error.message);
    }
  });
}

function cell(row, text, className) {
  const td = row.insertCell();
  td.textContent = text;
  if (className) td.className = className;
  return td;
}

function leaseLeft(job) {
  if (!job.leaseExpiresAt) return "-";
  const seconds = Math.round((Date.parse(job.leaseExpiresAt) - Date.now()) / 1000);
  return seconds <= 0 ? "lapsed" : seconds + "s";
}

function showRunning(jobs) {
  const body = document.querySelector("#running tbody");
  if (!body) return;
  body.replaceChildren();
  for (const job of jobs) {
    const row = body.insertRow();
    const link = document.createElement("a");
    link.href = jobUrl(job.id);
    link.textContent = job.id;
    row.insertCell().append(link);
    cell(row, job.name);
    cell(row, job.worker || "-");
    const shown = row.insertCell();
    if (job.progress) {
      const bar = document.createElement("progress");
      if (job.progress.total) { bar.max = job.progress.total; bar.value = job.progress.completed; }
      shown.append(bar, " " + job.progress.completed + (job.progress.total ? " of " + job.progress.total : " done"));
    } else {
      shown.textContent = "-";
    }
    cell(row, leaseLeft(job));
  }
  document.getElementById("running-count").textContent = jobs.length;
}

function showActivity(activity) {
  const chart = document.getElementById("activity");
  if (!chart) return;
  const most = Math.max(1, ...activity.finished, ...activity.failed);
  for (const kind of ["finished", "failed"]) {
    activity[kind].forEach((count, minute) => {
      const bar = chart.querySelector("rect." + kind + "[data-minute='" + minute + "']");
      if (!bar) return;
      const height = Math.round(40 * count / most);
      bar.setAttribute("height", height);
      bar.setAttribute("y", (kind === "finished" ? 44 : 88) - height);
    });
  }
  document.getElementById("activity-total").textContent =
    activity.finished.reduce((a, b) => a + b, 0) + " finished, " + activity.failed.reduce((a, b) => a + b, 0) + " failed";
}

async function refreshOverview() {
  const [stats, running, activity] = await Promise.all([
    fetch("/stats").then((answer) => answer.json()),
    fetch("/jobs?state=running&limit=50&order=oldest").then((answer) => answer.json()),
    fetch("/activity").then((answer) => answer.json()),
  ]);
  for (const element of document.querySelectorAll("[data-count]")) {
    element.textContent = stats[element.dataset.count];
  }
  const oldest = stats.oldestPendingSeconds;
  document.getElementById("oldest").textContent = oldest === null ? "none waiting" : Math.round(oldest) + "s";
  showRunning(running.jobs);
  showActivity(activity);
  document.body.dataset.refreshed = String(Date.now());
}

function followStore() {
  if (document.body.dataset.live !== "overview") return;
  let pending = null;
  const soon = () => {
    if (pending) return;
    pending = setTimeout(() => { pending = null; refreshOverview().catch((error) => notice(error.message)); }, 150);
  };
  const events = new EventSource("/events");
  events.addEventListener("job", soon);
  events.addEventListener("open", () => { document.body.dataset.following = "yes"; });
  setInterval(soon, 15000); // leases lapse and minutes pass without any write
}

setUpToken();
setUpActions();
followStore();

// The dashboard's only script: actions through the API with the page's CSRF token, and
// live states from the server's event stream (no polling). Every text it writes goes in
// through textContent: a name is never markup.
"use strict";

const csrf = document.querySelector('meta[name="csrf-token"]')?.content;
const notice = document.getElementById("notice");

function tell(message) {
  if (!notice) return;
  notice.textContent = message;
  notice.hidden = !message;
}

document.addEventListener("click", async (event) => {
  const button = event.target.closest("button[data-action]");
  if (!button) return;
  button.disabled = true;
  try {
    const headers = { "X-CSRF-Token": csrf || "" };
    if (button.dataset.body) headers["Content-Type"] = "application/json";
    const answer = await fetch(button.dataset.action, {
      method: "POST",
      headers,
      body: button.dataset.body,
      credentials: "same-origin",
    });
    const body = await answer.json().catch(() => ({}));
    if (!answer.ok) {
      tell(body?.error?.message || `the server answered ${answer.status}`);
    } else if (body && body.id && body.repositoryId) {
      // A session: followed in its row, else shown on its own page.
      tell("");
      follow(body);
      if (!document.querySelector(`[data-repository="${CSS.escape(body.repositoryId)}"]`)) {
        window.location.assign(`/sessions/${encodeURIComponent(body.id)}`);
      }
    } else {
      window.location.reload();
    }
  } finally {
    button.disabled = false;
  }
});

// A form sent to the API as JSON: each input's data-field is its name in the body (a dot
// nests it); an empty text leaves the field out (on an edit: unchanged), a checkbox is a
// boolean; credentials go only with a key (a PATCH replaces them whole).
document.addEventListener("submit", async (event) => {
  const form = event.target.closest("form[data-api]");
  if (!form) return;
  event.preventDefault();
  const body = {};
  for (const input of form.querySelectorAll("[data-field]")) {
    const value = input.type === "checkbox" ? input.checked
      : input.type === "number" ? (input.value === "" ? null : Number(input.value))
      : input.value.trim();
    if (value === "") continue;
    const [outer, inner] = input.dataset.field.split(".");
    if (inner === undefined) body[outer] = value;
    else if (value !== null) (body[outer] = body[outer] || {})[inner] = value;
    else if (!(outer in body)) body[outer] = null;
  }
  if (body.remoteCredentials && !body.remoteCredentials.accessKeyId) {
    if (form.dataset.method === "PATCH") delete body.remoteCredentials;
  }
  const answer = await fetch(form.dataset.api, {
    method: form.dataset.method,
    headers: { "X-CSRF-Token": csrf || "", "Content-Type": "application/json" },
    body: JSON.stringify(body),
    credentials: "same-origin",
  });
  const reply = await answer.json().catch(() => ({}));
  if (answer.ok) window.location.assign("/");
  else tell(reply?.error?.message || `the server answered ${answer.status}`);
});

// A repository's health as a session of it moves on (the page's own words: dashboard.py).
const HEALTH = {
  queued: "running", running: "running", completed: "in sync", partial: "partial",
  failed: "failed", stopped: "stopped", halted: "halted",
};

function counts(session) {
  const push = session.push || {}, pull = session.pull || {};
  const files = (push.filesDone || 0) + (pull.filesDone || 0);
  const planned = (push.filesPlanned || 0) + (pull.filesPlanned || 0);
  return planned ? `${files} of ${planned} files` : "";
}

// A time as the server writes it on the page ("2026-12-04 21:56:16 UTC", "—" for none).
function when(iso) {
  return iso ? iso.replace("T", " ").replace("Z", "").slice(0, 19) + " UTC" : "\u2014";
}

// What a session's end changes in its repository's row, as the service now says it:
// its last success, and its next run (a schedule counts from the session's end).
async function refresh(row, repositoryId) {
  const answer = await fetch(`/api/v1/repositories/${encodeURIComponent(repositoryId)}`,
    { credentials: "same-origin" });
  if (!answer.ok) return;
  const repository = await answer.json();
  const last = row.querySelector(".last-success");
  if (last) last.textContent = when(repository.lastSuccessAt);
  const next = row.querySelector(".next-run");
  if (next) next.textContent = when(repository.nextRunAt);
}

function follow(session) {
  const row = document.querySelector(`[data-repository="${CSS.escape(session.repositoryId)}"]`);
  if (row) {
    const state = row.querySelector(".state");
    if (state) {
      state.textContent = session.state;
      state.dataset.session = session.id;
      if (state.tagName === "A") state.href = `/sessions/${encodeURIComponent(session.id)}`;
    }
    const bar = row.querySelector("progress");
    const active = session.state === "queued" || session.state === "running";
    if (bar) {
      bar.hidden = !active;
      bar.value = session.progressPercent || 0;
    }
    const figures = row.querySelector(".counts");
    if (figures) figures.textContent = counts(session);
    const error = row.querySelector(".error");
    if (error) error.textContent = session.error || "";
    const health = row.querySelector(".status .badge");
    const word = HEALTH[session.state];
    if (health && word) {
      health.textContent = word;
      health.className = `badge ${word.replace(" ", "-")}`;
    }
    if (!active) refresh(row, session.repositoryId);
  }
  for (const cell of document.querySelectorAll(`[data-session="${CSS.escape(session.id)}"]`)) {
    if (!row || !row.contains(cell)) cell.textContent = session.state;
  }
  const detail = document.querySelector(`[data-session-detail="${CSS.escape(session.id)}"]`);
  if (detail) {
    const bar = detail.querySelector("progress");
    if (bar) bar.value = session.progressPercent || 0;
    const figures = detail.querySelector(".counts");
    if (figures) figures.textContent = counts(session);
  }
}

if (csrf && window.EventSource) {
  // From the last event before the page was made (a reconnection goes on from the last
  // event received, which the browser sends as Last-Event-ID).
  const since = document.querySelector('meta[name="events-since"]')?.content;
  const stream = new EventSource(`/api/v1/events${since ? `?since=${since}` : ""}`);
  const types = ["session.queued", "session.started", "session.progress", "session.finished",
    "session.failed", "session.stopped", "session.halted"];
  for (const type of types) {
    stream.addEventListener(type, (message) => {
      const event = JSON.parse(message.data);
      if (event.data && event.data.session) follow(event.data.session);
    });
  }
}

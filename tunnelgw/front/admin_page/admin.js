// The admin page: the tunnel list and its revoke buttons.  No inline
// script (the page's Content-Security-Policy forbids it), no library;
// every value is put in the page as text, never as HTML.
"use strict";

const REVOKE_FOR = 3600; // seconds a revoke button revokes a user for

function cell(row, text, numeric) {
  const td = document.createElement("td");
  td.textContent = text === null || text === undefined ? "" : String(text);
  if (numeric) td.className = "n";
  row.appendChild(td);
  return td;
}

function when(seconds) {
  return new Date(seconds * 1000).toISOString().replace("T", " ").slice(0, 19);
}

async function api(path, options) {
  const response = await fetch(path, Object.assign({ credentials: "same-origin", cache: "no-store" }, options));
  if (!response.ok) throw new Error(`${path}: HTTP ${response.status}`);
  return response.json();
}

async function revoke(user, button) {
  button.disabled = true;
  await api("/api/revocations", {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ kind: "user", value: user, seconds: REVOKE_FOR, reason: "revoked from the admin page" }),
  });
  await refresh();
}

async function refresh() {
  const status = document.getElementById("status");
  try {
    const [{ tunnels }, { revocations }] = await Promise.all([api("/api/tunnels"), api("/api/revocations")]);
    const body = document.querySelector("#tunnels tbody");
    body.replaceChildren();
    for (const t of tunnels) {
      const row = document.createElement("tr");
      row.dataset.conn = t.conn_id;
      row.dataset.user = t.user;
      cell(row, t.instance);
      cell(row, t.user);
      cell(row, t.service);
      cell(row, t.subprotocol);
      cell(row, t.origin);
      cell(row, t.bytes_up, true);
      cell(row, t.bytes_down, true);
      cell(row, when(t.since));
      cell(row, when(t.last_activity));
      const button = document.createElement("button");
      button.type = "button";
      button.textContent = "revoke user";
      button.addEventListener("click", () => revoke(t.user, button).catch(showError));
      cell(row, "").appendChild(button);
      body.appendChild(row);
    }
    const revoked = document.querySelector("#revocations tbody");
    revoked.replaceChildren();
    for (const r of revocations) {
      const row = document.createElement("tr");
      for (const text of [r.kind, r.value, when(r.until), r.reason, r.by]) cell(row, text);
      revoked.appendChild(row);
    }
    status.textContent = `${tunnels.length} tunnels open`;
  } catch (error) {
    showError(error);
  }
}

function showError(error) {
  document.getElementById("status").textContent = `Error: ${error.message}`;
}

refresh();
setInterval(refresh, 5000);

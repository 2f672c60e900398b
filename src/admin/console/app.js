// The admin console: the seed's "Managing Developers" page over the admin API.
// Served by the filter itself under the admin prefix; talks to the API on the
// same origin with the bearer token kept in this tab's sessionStorage (never in
// a URL, a cookie or local storage). Everything a developer can influence is put
// in the page as text (textContent), never as markup.

const BASE = location.pathname.replace(/\/+$/, "");
const TOKEN_KEY = "devportal-admin-token";
const STATUSES = ["approved", "requested", "rejected", "revoked"];
const LABELS = { accept: "Accept", reject: "Reject", revoke: "Revoke", reapprove: "Re-approve", approve: "Approve", delete: "Delete", extend: "Extend" };
// "90d", "12h": a duration; anything else is sent as an instant (RFC 3339, UTC).
const DURATION = /^\d+[dhms]$/;
const CONFIRM = new Set(["reject", "revoke", "delete"]);
const PER_PAGE = 50;
const POLL_MS = 1000;
const MAX_POLL_MS = 10000;
const PLAIN_ADDRESS = /^[A-Za-z0-9.!$&'*+=_~-]+@[A-Za-z0-9.-]+$/;

const $ = (id) => document.getElementById(id);
const state = { status: "requested", page: 1, q: "", writable: true, stale: false, selected: new Set(), developers: [] };

function token() { return sessionStorage.getItem(TOKEN_KEY); }

async function api(method, path, body) {
  const headers = { authorization: "Bearer " + token() };
  const init = { method, headers, credentials: "omit", cache: "no-store", referrerPolicy: "no-referrer" };
  if (body !== undefined) { headers["content-type"] = "application/json"; init.body = JSON.stringify(body); }
  const response = await fetch(BASE + path, init);
  let data = {};
  try { data = await response.json(); } catch (_) { data = {}; }
  if (response.status === 401 && path !== "/session") { signOut("Your session ended: sign in again."); }
  return { status: response.status, data };
}

function el(tag, text, attrs) {
  const node = document.createElement(tag);
  if (text !== undefined && text !== null) node.textContent = String(text);
  for (const [name, value] of Object.entries(attrs || {})) node.setAttribute(name, value);
  return node;
}

function when(iso) { return iso ? new Date(iso).toLocaleString() : ""; }

function say(text, isError) {
  const message = $("message");
  message.textContent = text || "";
  message.className = isError ? "error" : "";
}

// ---- Address bar: #<status>?q=...&page=N ------------------------------------

function readHash() {
  const [status, query] = location.hash.replace(/^#/, "").split("?");
  const params = new URLSearchParams(query || "");
  state.status = STATUSES.includes(status) ? status : "requested";
  state.q = params.get("q") || "";
  state.page = Math.max(1, parseInt(params.get("page") || "1", 10) || 1);
}

function writeHash(status, q, page) {
  const params = new URLSearchParams();
  if (q) params.set("q", q);
  if (page > 1) params.set("page", String(page));
  const query = params.toString();
  location.hash = status + (query ? "?" + query : "");
}

// ---- Sign in and out --------------------------------------------------------

async function signIn(event) {
  event.preventDefault();
  sessionStorage.setItem(TOKEN_KEY, $("token").value);
  $("token").value = "";
  if (!(await startSession())) {
    sessionStorage.removeItem(TOKEN_KEY);
    $("sign-in-error").textContent = "That token was not accepted.";
  }
}

async function startSession() {
  if (!token()) return false;
  const { status, data } = await api("GET", "/session");
  if (status !== 200) return false;
  state.writable = Boolean(data.writable);
  $("actor").textContent = "Signed in as " + data.actor;
  $("who").hidden = false;
  $("sign-in-view").hidden = true;
  $("console-view").hidden = false;
  $("sign-in-error").textContent = "";
  readHash();
  await refresh();
  return true;
}

function signOut(why) {
  sessionStorage.removeItem(TOKEN_KEY);
  $("who").hidden = true;
  $("console-view").hidden = true;
  $("sign-in-view").hidden = false;
  $("sign-in-error").textContent = why || "";
}

// ---- The tab ----------------------------------------------------------------

// The next look waits POLL_MS, or 20 times as long as the last page took if
// that is longer (10 s at most). A gateway's worker answers one read at a
// time, and requests to the gate on that worker wait behind it. A read that is
// slow because of the directory's size (a search of a tab of ten million
// developers takes about a tenth of a second) then keeps the worker busy at
// most 1/21 of the time, not a tenth of it every second. A read that failed
// waited on etcd, not on the worker: it does not slow the next look.
async function poll() {
  let took = 0;
  try {
    const busy = [...document.querySelectorAll("dialog")].some((d) => d.open);
    if (!busy && !$("console-view").hidden) {
      const started = performance.now();
      if (await refresh()) took = performance.now() - started;
    }
  } finally {
    setTimeout(poll, Math.min(MAX_POLL_MS, Math.max(POLL_MS, 20 * took)));
  }
}

// Whether the page of developers was read.
async function refresh() {
  if (!token()) return false;
  const params = new URLSearchParams({ status: state.status, page: String(state.page), per_page: String(PER_PAGE) });
  if (state.q) params.set("q", state.q);
  const [list, health] = await Promise.all([
    api("GET", "/developers?" + params),
    fetch(BASE + "/health", { cache: "no-store", credentials: "omit" }).then((r) => r.json()).catch(() => ({ status: "unreachable" })),
  ]);
  state.stale = health.status !== "ok";
  showBanner();
  if (list.status !== 200) {
    // Keep the last rows, with their actions disabled while the banner shows.
    say(list.data.message || "The directory could not be read.", true);
    renderRows();
    renderBulk();
    return false;
  }
  state.developers = list.data.developers || [];
  for (const status of STATUSES) {
    const count = document.querySelector(`[data-count="${status}"]`);
    count.textContent = String((list.data.counts || {})[status] ?? "");
  }
  for (const tab of document.querySelectorAll("#tabs a")) {
    tab.setAttribute("aria-selected", String(tab.dataset.status === state.status));
  }
  $("q").value = state.q;
  renderRows();
  const pages = Math.max(1, Math.ceil((list.data.total || 0) / PER_PAGE));
  $("page-info").textContent = `Page ${state.page} of ${pages} · ${list.data.total} developers`;
  $("prev").disabled = state.page <= 1;
  $("next").disabled = state.page >= pages;
  renderBulk();
  return true;
}

function showBanner() {
  const banner = $("banner");
  if (!state.writable) {
    banner.textContent = "Read-only: this directory is static (the filter configuration's developers). Change it there.";
    banner.className = "";
    banner.hidden = false;
  } else if (state.stale) {
    banner.textContent = "The directory (etcd) cannot be reached: showing the last known state. Actions are disabled until it is back.";
    banner.className = "outage";
    banner.hidden = false;
  } else {
    banner.hidden = true;
  }
}

function canAct() { return state.writable && !state.stale; }

function renderRows() {
  const rows = $("rows");
  rows.replaceChildren();
  const visible = new Set(state.developers.map((d) => d.email));
  for (const email of [...state.selected]) if (!visible.has(email)) state.selected.delete(email);
  for (const developer of state.developers) {
    const row = el("tr", null, { "data-email": developer.email });
    const pick = el("input", null, { type: "checkbox", "aria-label": "Select " + developer.email });
    pick.checked = state.selected.has(developer.email);
    pick.addEventListener("change", () => {
      if (pick.checked) state.selected.add(developer.email); else state.selected.delete(developer.email);
      renderBulk();
    });
    const cellPick = el("td"); cellPick.append(pick);
    const name = el("button", developer.email, { type: "button", class: "link" });
    name.addEventListener("click", () => showDetail(developer.email));
    const cellName = el("td"); cellName.append(name);
    const cellActions = el("td", null, { class: "actions" });
    for (const action of developer.actions || []) {
      const button = el("button", LABELS[action] || action, { type: "button", "data-action": action });
      button.disabled = !canAct();
      button.addEventListener("click", () => act(developer.email, action));
      cellActions.append(button);
    }
    if (developer.status === "approved" && PLAIN_ADDRESS.test(developer.email)) {
      cellActions.append(el("a", "Email Developer", { href: "mailto:" + developer.email, class: "button" }));
    }
    const updated = when(developer.updated_at) + (developer.expires_at ? " · approval ends " + when(developer.expires_at) : "");
    row.append(cellPick, cellName, el("td", updated), cellActions);
    rows.append(row);
  }
  $("select-all").checked = state.developers.length > 0 && state.selected.size === state.developers.length;
}

// ---- Acting on one developer ------------------------------------------------

function confirmAction(title, text) {
  return new Promise((resolve) => {
    const dialog = $("confirm");
    $("confirm-title").textContent = title;
    $("confirm-text").textContent = text;
    $("confirm-reason").value = "";
    dialog.addEventListener("close", () => {
      resolve(dialog.returnValue === "ok" ? { reason: $("confirm-reason").value.trim() } : null);
    }, { once: true });
    dialog.returnValue = "";
    dialog.showModal();
    $("confirm-reason").focus();
  });
}

async function act(email, action) {
  let body = {};
  if (action === "extend") {
    const until = window.prompt(`Extend the approval of ${email} until (a duration like 90d, or 2027-03-31T00:00:00Z):`, "90d");
    if (!until) return;
    if (DURATION.test(until.trim())) body.expires_in = until.trim(); else body.expires_at = until.trim();
  }
  if (CONFIRM.has(action)) {
    const answer = await confirmAction(`${LABELS[action]} ${email}?`, `This ${action === "delete" ? "deletes" : "changes"} the developer; it is recorded in the history.`);
    if (!answer) return;
    if (answer.reason) body.reason = answer.reason;
  }
  const { status, data } = await api("POST", `/developers/${encodeURIComponent(email)}/${action}`, body);
  if (status === 200) {
    say(`${email}: ${LABELS[action] || action} done.`);
  } else if (status === 409 && data.developer) {
    const offered = (data.developer.actions || []).map((a) => LABELS[a] || a).join(", ") || "none";
    say(`${email} changed meanwhile: it is now ${data.developer.status} (actions: ${offered}). Nothing was changed.`, true);
  } else if (status === 409 && data.status) {
    const offered = (data.actions || []).map((a) => LABELS[a] || a).join(", ") || "none";
    say(`${email} is ${data.status}: that action is not offered (actions: ${offered}).`, true);
  } else {
    say(`${email}: ${data.message || "the action failed (" + status + ")"}`, true);
  }
  await refresh();
}

async function showDetail(email) {
  const { status, data } = await api("GET", `/developers/${encodeURIComponent(email)}`);
  if (status !== 200) { say(data.message || "Could not read " + email, true); return; }
  const developer = data.developer;
  $("detail-title").textContent = developer.email;
  const facts = $("detail-facts");
  facts.replaceChildren();
  const metadata = Object.entries(developer.metadata || {}).map(([k, v]) => `${k}: ${typeof v === "string" ? v : JSON.stringify(v)}`).join("; ");
  const ends = developer.status === "approved" ? (developer.expires_at ? when(developer.expires_at) : "never") : "n/a";
  for (const [term, value] of [["Status", developer.status], ["Registered", when(developer.created_at)], ["Last change", when(developer.updated_at)], ["Approval ends", ends], ["Metadata", metadata || "none"]]) {
    facts.append(el("dt", term), el("dd", value));
  }
  const history = $("detail-history");
  history.replaceChildren();
  for (const change of developer.history || []) {
    const row = el("tr");
    row.append(el("td", when(change.at)), el("td", change.from || "(registration)"), el("td", change.to), el("td", change.actor), el("td", change.reason || ""));
    history.append(row);
  }
  $("detail").showModal();
}

// ---- Several at once: preview, then apply -----------------------------------

function renderBulk() {
  const select = $("bulk-action");
  const offered = state.developers.find(() => true)?.actions || [];
  const current = select.value;
  select.replaceChildren(...offered.map((a) => el("option", LABELS[a] || a, { value: a })));
  if (offered.includes(current)) select.value = current;
  $("bulk-dry-run").disabled = state.selected.size === 0 || offered.length === 0 || !canAct();
}

async function bulkPreview() {
  const action = $("bulk-action").value;
  const emails = [...state.selected];
  const { status, data } = await api("POST", "/developers/bulk", { action, emails, dry_run: true });
  if (status !== 200) { say(data.message || "The preview failed.", true); return; }
  $("bulk-title").textContent = `${LABELS[action] || action}: ${data.succeeded} of ${emails.length} can change`;
  const list = $("bulk-results");
  list.replaceChildren();
  for (const result of data.results || []) {
    const item = result.status === 200
      ? el("li", `${result.email}: ${result.result.from} → ${result.result.deletes ? "deleted" : result.result.to}`, { "data-ok": "true" })
      : el("li", `${result.email}: cannot change (${result.result.message || result.result.error})`, { "data-ok": "false" });
    list.append(item);
  }
  $("bulk-reason").value = "";
  $("bulk-apply").disabled = data.succeeded === 0;
  const dialog = $("bulk-dialog");
  dialog.addEventListener("close", async () => {
    if (dialog.returnValue !== "apply") return;
    const movable = (data.results || []).filter((r) => r.status === 200).map((r) => r.email);
    const body = { action, emails: movable };
    const reason = $("bulk-reason").value.trim();
    if (reason) body.reason = reason;
    const applied = await api("POST", "/developers/bulk", body);
    say(applied.status === 200 ? `${applied.data.succeeded} changed, ${applied.data.failed} not.` : (applied.data.message || "Applying failed."), applied.status !== 200);
    state.selected.clear();
    await refresh();
  }, { once: true });
  dialog.returnValue = "";
  dialog.showModal();
}

// ---- Invitations ------------------------------------------------------------

async function invite(event) {
  if (event.submitter?.value !== "invite") return;
  event.preventDefault();
  const { status, data } = await api("POST", "/invitations", { emails: $("invite-emails").value });
  const refused = $("invite-refused");
  refused.replaceChildren();
  for (const bad of data.invalid || []) {
    refused.append(el("li", `Refused: ${bad.input ?? bad.email ?? ""} (${bad.reason ?? bad.error ?? "not an address"})`));
  }
  const link = $("invite-link");
  if (status === 200 && typeof data.mailto === "string" && data.mailto.startsWith("mailto:")) {
    link.href = data.mailto;
    link.hidden = false;
    location.href = data.mailto;
  } else {
    link.hidden = true;
    link.removeAttribute("href");
    if (status !== 200 && !(data.invalid || []).length) refused.append(el("li", data.message || "Nothing to invite."));
  }
}

// ---- Wiring -----------------------------------------------------------------

function init() {
  $("sign-in").addEventListener("submit", signIn);
  $("sign-out").addEventListener("click", () => signOut());
  window.addEventListener("hashchange", () => { readHash(); state.selected.clear(); refresh(); });
  $("search").addEventListener("submit", (event) => { event.preventDefault(); writeHash(state.status, $("q").value.trim(), 1); });
  $("prev").addEventListener("click", () => writeHash(state.status, state.q, state.page - 1));
  $("next").addEventListener("click", () => writeHash(state.status, state.q, state.page + 1));
  $("select-all").addEventListener("change", (event) => {
    state.selected = new Set(event.target.checked ? state.developers.map((d) => d.email) : []);
    renderRows();
    renderBulk();
  });
  $("bulk-dry-run").addEventListener("click", bulkPreview);
  $("invite-open").addEventListener("click", () => {
    $("invite-refused").replaceChildren();
    $("invite-link").hidden = true;
    $("invite").showModal();
  });
  $("invite-form").addEventListener("submit", invite);
  // Live: changes made elsewhere show up without a reload.
  setTimeout(poll, POLL_MS);
  startSession();
}

init();

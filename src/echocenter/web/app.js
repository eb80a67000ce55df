// EchoCenter admin page: plain JavaScript over the public REST API with the JWT. Text goes into the page
// through textContent only (never innerHTML), so nothing from Feishu or the API can inject markup.
"use strict";

const $ = (id) => document.getElementById(id);
const TOKEN_KEY = "echocenter.token";
const SECRET_FIELDS = ["app_secret", "verification_token", "encrypt_key"];
const LIST_FIELDS = ["allowed_chat_ids", "user_whitelist", "approvers"];
const BOOL_FIELDS = ["allow_dm", "allow_group_mention", "mention_required", "ignore_bot_messages", "callback_enabled",
                     "streaming_replies"];
const LOG_ACTIONS = ["create_connector", "update_connector", "delete_connector", "verify_callback",
  "enable_connector", "disable_connector", "ws_connecting", "ws_connected", "ws_disconnected", "ws_client_error",
  "ws_filtered", "ws_routed", "ws_event_ignored", "ws_outbound", "ws_auth_card", "ws_auth_card_decision",
  "approval_result", "butler_error", "callback_rejected", "approval_refused"];

const state = { connectors: [], connector: null, logCursor: null, timers: [] };

class ApiError extends Error {
  constructor(status, body) {
    super((body && body.error && body.error.message) || `HTTP ${status}`);
    this.status = status;
    this.fields = (body && body.error && body.error.fields) || [];
  }
}

async function api(method, path, body) {
  const headers = { "Content-Type": "application/json" };
  const token = sessionStorage.getItem(TOKEN_KEY);
  if (token) headers.Authorization = `Bearer ${token}`;
  const response = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  if (response.status === 401 && token) {
    logout("Your session has expired. Please log in again.");
    throw new ApiError(401, null);
  }
  const data = response.status === 204 ? null : await response.json().catch(() => null);
  if (!response.ok) throw new ApiError(response.status, data);
  return data;
}

function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (key === "class") node.className = value;
    else if (key === "text") node.textContent = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value);
  }
  for (const child of children) if (child !== null && child !== undefined) node.append(child);
  return node;
}

function when(iso) {
  return iso ? new Date(iso).toLocaleString() : "—";
}

function notice(id, text, kind) {
  const node = $(id);
  node.textContent = text;
  node.className = `notice ${kind || ""}`;
  node.hidden = !text;
}

// ---- session -------------------------------------------------------------------------------------------
function logout(message) {
  sessionStorage.removeItem(TOKEN_KEY);
  state.timers.forEach(clearInterval);
  state.timers = [];
  $("app-view").hidden = true;
  $("login-view").hidden = false;
  notice("login-message", message || "", "bad");
  $("login-username").focus();
}

$("login-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  $("login-error").textContent = "";
  try {
    const result = await api("POST", "/api/auth/login",
      { username: $("login-username").value, password: $("login-password").value });
    sessionStorage.setItem(TOKEN_KEY, result.token);
    $("login-password").value = "";
    await enter(result.user);
  } catch (error) {
    $("login-error").textContent = error.message;
  }
});

$("logout").addEventListener("click", async () => {
  // Server-side logout: the token stops working everywhere, not only in this tab.
  try { await api("POST", "/api/auth/logout"); } catch (error) { /* already invalid: forget it here too */ }
  logout("You are logged out.");
});

async function enter(user) {
  $("login-view").hidden = true;
  $("app-view").hidden = false;
  notice("login-message", "");
  $("whoami").textContent = `${user.username} (${user.role})`;
  state.timers.push(setInterval(tick, 3000));
  await route();
}

// ---- navigation ----------------------------------------------------------------------------------------
const VIEWS = { connector: showConnector, logs: showLogs, approvals: () => showApprovals(true), agents: showAgents };

function currentView() {
  const name = location.hash.replace(/^#\//, "");
  return VIEWS[name] ? name : "connector";
}

async function route() {
  const name = currentView();
  for (const key of Object.keys(VIEWS)) $(`view-${key}`).hidden = key !== name;
  document.querySelectorAll("nav a").forEach((a) => {
    if (a.dataset.view === name) a.setAttribute("aria-current", "page");
    else a.removeAttribute("aria-current");
  });
  try { await VIEWS[name](); } catch (error) { if (error.status !== 401) console.error(error); }
}

window.addEventListener("hashchange", route);

async function tick() {
  if ($("app-view").hidden) return;
  const name = currentView();
  try {
    if (name === "connector") await refreshStatus();
    if (name === "logs" && $("log-auto").checked) await loadLogs(false);
    if (name === "approvals") await showApprovals();
    if (name === "agents") await loadAgents();
  } catch (error) { /* the next tick tries again; a 401 already sent us to the login */ }
}

// ---- connector -----------------------------------------------------------------------------------------
async function loadConnectors() {
  state.connectors = (await api("GET", "/api/integrations/feishu")).items;
  const picker = $("connector-picker");
  $("connector-picker-label").hidden = state.connectors.length < 2;
  picker.replaceChildren(...state.connectors.map((c) => new Option(`${c.connector_name} (${c.app_id || "no app"})`, c.id)));
  const keep = state.connector && state.connectors.find((c) => c.id === state.connector.id);
  state.connector = keep || state.connectors[0] || null;
  if (state.connector) picker.value = state.connector.id;
}

$("connector-picker").addEventListener("change", () => {
  state.connector = state.connectors.find((c) => String(c.id) === $("connector-picker").value);
  fillForm(state.connector);
  showStatus(state.connector);
});

async function showConnector() {
  await loadConnectors();
  fillForm(state.connector);
  showStatus(state.connector);
}

function fillForm(c) {
  clearErrors("connector-form");
  const form = $("connector-form");
  form.connector_name.value = c ? c.connector_name : "Feishu";
  form.app_id.value = c ? c.app_id || "" : "";
  form.prefix_command.value = c ? c.prefix_command : "";
  form.thinking_reaction.value = c ? c.thinking_reaction : "OnIt";
  form.rate_limit_per_minute.value = c ? c.rate_limit_per_minute : 30;
  for (const name of BOOL_FIELDS) form[name].checked = c ? c[name] : name !== "callback_enabled";
  for (const name of LIST_FIELDS) form[name].value = c ? c[name].join("\n") : "";
  for (const name of SECRET_FIELDS) {
    const box = form.querySelector(`[data-secret=${name}]`);
    form[name].value = "";
    box.querySelector("[data-clear]").checked = false;
    const isSet = c && c[`has_${name}`];
    box.querySelector(".secret-state").textContent = isSet ? `set (${c[`${name}_mask`]})` : "not set";
    form[name].placeholder = isSet ? "leave empty to keep" : "not set";
  }
  notice("connector-message", "");
}

function showStatus(c) {
  const badge = $("status-badge");
  badge.textContent = c ? c.status : "no connector yet";
  badge.className = `badge ${c ? c.status : ""}`;
  $("verified-text").textContent = c ? (c.callback_verified ? `yes, ${when(c.last_verified_at)}` : "no") : "—";
  $("last-event").textContent = c ? when(c.last_event_at) : "—";
  $("last-error").textContent = (c && c.last_error) || "—";
  showInstances(c);
  const toggle = $("toggle-enabled");
  toggle.textContent = c && c.enabled ? "Disable" : "Enable";
  toggle.disabled = !c || (!c.enabled && !c.callback_verified);
  $("verify").disabled = !c;
  $("enable-hint").textContent = !c ? "Save the connector first."
    : !c.callback_verified && !c.enabled ? "Verify the credentials before enabling." : (c.enabled ? "Enabled." : "");
}

// Each instance's own connection (several instances: README "Running several instances").
function showInstances(c) {
  $("status-summary").textContent = (c && c.status_summary) || "—";
  $("instance-list").replaceChildren(...(c ? c.instances : []).map((i) => el("li", {},
    el("span", { text: i.instance_id }), " ",
    el("span", { class: `badge ${i.state}`, text: i.state }),
    i.last_error ? el("span", { class: "muted", text: ` ${i.last_error}` }) : null)));
}

async function refreshStatus() {
  if (!state.connector) return;
  state.connector = await api("GET", `/api/integrations/feishu/${state.connector.id}`);
  showStatus(state.connector);
}

function clearErrors(formId) {
  const form = $(formId);
  form.querySelectorAll(".field-error").forEach((p) => { p.textContent = ""; });
  form.querySelectorAll(".invalid").forEach((n) => n.classList.remove("invalid"));
}

function showFieldErrors(formId, error) {
  const form = $(formId);
  let placed = false;
  for (const { field, message } of error.fields) {
    const base = field.split(/[.[]/)[0];
    const slot = form.querySelector(`[data-error-for="${base}"]`);
    if (!slot) continue;
    slot.textContent = slot.textContent ? `${slot.textContent}; ${message}` : message;
    const input = form.querySelector(`[name="${base}"]`);
    if (input) input.classList.add("invalid");
    placed = true;
  }
  return placed;
}

function formBody() {
  const form = $("connector-form");
  const lines = (text) => text.split(/[\n,]/).map((s) => s.trim()).filter(Boolean);
  const body = {
    connector_name: form.connector_name.value.trim(),
    app_id: form.app_id.value.trim(),
    prefix_command: form.prefix_command.value.trim(),
    thinking_reaction: form.thinking_reaction.value.trim(),
    rate_limit_per_minute: form.rate_limit_per_minute.value === "" ? null : Number(form.rate_limit_per_minute.value),
  };
  for (const name of BOOL_FIELDS) body[name] = form[name].checked;
  for (const name of LIST_FIELDS) body[name] = lines(form[name].value);
  for (const name of SECRET_FIELDS) {
    const clear = form.querySelector(`[data-clear=${name}]`).checked;
    if (clear) body[name] = null;
    else if (form[name].value) body[name] = form[name].value;
  }
  if (!Number.isInteger(body.rate_limit_per_minute)) body.rate_limit_per_minute = form.rate_limit_per_minute.value;
  return body;
}

$("connector-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  clearErrors("connector-form");
  const body = formBody();
  try {
    state.connector = state.connector
      ? await api("PATCH", `/api/integrations/feishu/${state.connector.id}`, body)
      : await api("POST", "/api/integrations/feishu", body);
    await loadConnectors();
    fillForm(state.connector);
    showStatus(state.connector);
    notice("connector-message", "Saved.", "ok");
  } catch (error) {
    if (error.status === 401) return;
    // The form keeps what was typed: nothing is lost on a failed save.
    const placed = showFieldErrors("connector-form", error);
    notice("connector-message", placed ? "Please correct the highlighted fields." : error.message, "bad");
  }
});

$("verify").addEventListener("click", async () => {
  if (!state.connector) return;
  $("verify").disabled = true;
  notice("connector-message", "Asking Feishu…");
  try {
    const result = await api("POST", `/api/integrations/feishu/${state.connector.id}/verify-callback`);
    state.connector = result.connector;
    const d = result.detail || {};
    const feishu = d.feishu_code !== undefined && d.feishu_code !== null ? ` — Feishu: ${d.feishu_msg || ""} (code ${d.feishu_code})` : "";
    notice("connector-message", result.ok ? `Verified: ${result.message}` : `Not verified: ${result.message}${feishu}`,
      result.ok ? "ok" : "bad");
    showStatus(state.connector);
  } catch (error) {
    if (error.status === 401) return;
    showFieldErrors("connector-form", error);
    notice("connector-message", error.message, "bad");
  } finally {
    $("verify").disabled = !state.connector;
  }
});

$("toggle-enabled").addEventListener("click", async () => {
  if (!state.connector) return;
  try {
    state.connector = await api("PATCH", `/api/integrations/feishu/${state.connector.id}/enable`,
      { enabled: !state.connector.enabled });
    showStatus(state.connector);
    notice("connector-message", state.connector.enabled ? "Enabled." : "Disabled.", "ok");
  } catch (error) {
    if (error.status !== 401) notice("connector-message", error.message, "bad");
  }
});

// ---- doctor: POST /api/integrations/feishu/:id/doctor, each check with Feishu's code and the fix -------
$("doctor").addEventListener("click", async () => {
  if (!state.connector) return notice("connector-message", "Save the connector first.", "bad");
  const list = $("doctor-results");
  const chat = $("doctor-chat").value.trim();
  $("doctor").disabled = true;
  list.hidden = false;
  list.replaceChildren(el("li", { class: "muted", text: "Asking Feishu…" }));
  try {
    const result = await api("POST", `/api/integrations/feishu/${state.connector.id}/doctor`,
      chat ? { chat_id: chat } : undefined);
    list.replaceChildren(...result.checks.map((c) => el("li", { class: `check ${c.status}`, "data-check": c.name },
      el("strong", { text: `${c.status === "ok" ? "✓" : c.status === "failed" ? "✗" : "–"} ${c.name}: ` }),
      el("span", { text: c.summary }),
      c.feishu_code !== null && c.feishu_code !== undefined
        ? el("div", { class: "muted", text: `Feishu: code ${c.feishu_code}, ${c.feishu_msg || ""}` }) : null,
      c.status === "failed" && c.fix ? el("div", { class: "fix", text: `Fix: ${c.fix}` }) : null)));
    notice("connector-message", result.ok ? "Every check passed." : "Some checks failed: see below.",
      result.ok ? "ok" : "bad");
  } catch (error) {
    if (error.status === 401) return;
    list.replaceChildren(el("li", { class: "check failed", text: error.message }));
  } finally {
    $("doctor").disabled = false;
  }
});

// ---- logs ----------------------------------------------------------------------------------------------
$("log-action").append(...LOG_ACTIONS.map((a) => new Option(a, a)));
$("log-action").addEventListener("change", () => loadLogs(true));
$("log-level").addEventListener("change", () => loadLogs(true));
$("log-more").addEventListener("click", () => loadLogs(true, state.logCursor));

async function showLogs() {
  if (!state.connectors.length) await loadConnectors();
  await loadLogs(true);
}

function logRow(entry) {
  return el("tr", { class: `level-${entry.level}`, "data-id": entry.id },
    el("td", { text: when(entry.created_at) }),
    el("td", { text: entry.level }),
    el("td", { text: entry.action }),
    el("td", { class: "detail", text: JSON.stringify(entry.detail) }));
}

async function loadLogs(reset, cursor) {
  if (!state.connector) {
    $("logs-empty").hidden = false;
    $("logs-empty").textContent = "No connector yet.";
    return;
  }
  const params = new URLSearchParams({ limit: "50" });
  if ($("log-action").value) params.set("action", $("log-action").value);
  if ($("log-level").value) params.set("level", $("log-level").value);
  if (cursor) params.set("cursor", cursor);
  const page = await api("GET", `/api/integrations/feishu/${state.connector.id}/logs?${params}`);
  const rows = $("log-rows");
  if (cursor) {
    rows.append(...page.items.map(logRow));
    state.logCursor = page.next_cursor;
  } else if (reset || !rows.children.length) {
    rows.replaceChildren(...page.items.map(logRow));
    state.logCursor = page.next_cursor;
  } else {
    // auto-refresh: put new entries on top, keep what was loaded further down
    const newest = Number(rows.firstElementChild ? rows.firstElementChild.dataset.id : 0);
    const fresh = page.items.filter((e) => e.id > newest);
    rows.prepend(...fresh.map(logRow));
  }
  $("log-more").hidden = !state.logCursor;
  $("logs-empty").hidden = rows.children.length > 0;
  $("logs-empty").textContent = "No entries.";
}

// ---- approvals -----------------------------------------------------------------------------------------
function approvalCard(a) {
  const facts = el("dl", {},
    el("dt", { text: "Agent" }), el("dd", { text: a.agent_name }),
    el("dt", { text: "Command" }), el("dd", {}, el("code", { text: a.command })),
    el("dt", { text: "Reason" }), el("dd", { text: a.reason || "—" }),
    el("dt", { text: "Asked by" }), el("dd", { text: a.requested_by_name || a.requested_by_open_id }),
    el("dt", { text: a.status === "PENDING" ? "Expires" : "Decided" }),
    el("dd", { text: a.status === "PENDING" ? when(a.expires_at)
      : `${a.decided_by || "—"}, ${when(a.decided_at)}${a.decision_reason ? ` — “${a.decision_reason}”` : ""}` }));
  const card = el("article", { class: "panel approval", "data-approval": a.id },
    el("h3", {}, el("span", { text: `#${a.id}` }), el("span", { class: `badge ${a.status}`, text: a.status })), facts);
  if (a.output !== null && a.output !== undefined) card.append(el("pre", { text: a.output || "(no output)" }));
  if (a.status === "PENDING") {
    const reasonId = `reason-${a.id}`;
    const reason = el("input", { id: reasonId, maxlength: "500", placeholder: "optional" });
    const decide = (decision) => async () => {
      try {
        const result = await api("POST", `/api/approvals/${a.id}/decision`, { decision, reason: reason.value || null });
        notice("approvals-message", result.decided ? `#${a.id} ${decision === "approve" ? "approved" : "rejected"}.`
          : `#${a.id} was already decided (${result.approval.status}).`, result.decided ? "ok" : "");
      } catch (error) {
        if (error.status !== 401) notice("approvals-message", error.message, "bad");
      }
      await showApprovals(true);
    };
    card.append(el("label", { for: reasonId, text: "Reason (optional)" }), reason,
      el("div", { class: "actions" },
        el("button", { type: "button", class: "primary", text: "Approve", onclick: decide("approve") }),
        el("button", { type: "button", class: "danger", text: "Reject", onclick: decide("reject") })));
  }
  return card;
}

async function showApprovals(force) {
  const list = $("approval-list");
  const focused = document.activeElement && list.contains(document.activeElement);
  const typing = [...list.querySelectorAll("input")].some((i) => i.value);
  if (force !== true && (focused || typing) && list.children.length) return; // auto-refresh waits for the typist
  const approvals = await api("GET", "/api/approvals");
  list.replaceChildren(...approvals.map(approvalCard));
  $("approvals-empty").hidden = approvals.length > 0;
}

// ---- agents --------------------------------------------------------------------------------------------
async function showAgents() { await loadAgents(); }

async function loadAgents() {
  const agents = await api("GET", "/api/agents");
  $("agent-rows").replaceChildren(...agents.map((a) => el("tr", { "data-agent": a.name },
    el("td", { text: a.name }),
    el("td", {}, el("span", { class: `badge ${a.revoked_at ? "offline" : a.online ? "online" : "offline"}`,
      text: a.revoked_at ? "revoked" : a.online ? "online" : "offline" })),
    el("td", { text: when(a.last_seen_at) }),
    commandsCell(a),
    el("td", {}, a.revoked_at ? null : el("button", { type: "button", class: "danger", text: "Revoke",
      onclick: async () => {
        if (!confirm(`Revoke ${a.name}? It is disconnected at once.`)) return;
        await api("DELETE", `/api/agents/${a.id}`);
        await loadAgents();
      } })))));
}

const commandLines = (text) => text.split("\n").map((line) => line.trim()).filter(Boolean);

// The effective list (the admin's, else what the agent declared; empty = any) and an editor for the admin's.
function commandsCell(a) {
  const cell = el("td", { class: "commands" });
  const source = a.commands.length ? "set here" : a.declared_commands.length ? "declared by the agent" : "";
  const show = () => cell.replaceChildren(
    el("span", { text: a.effective_commands.length ? a.effective_commands.join("; ") : "any command" }),
    source ? el("span", { class: "muted", text: ` (${source}) ` }) : " ",
    el("button", { type: "button", text: "Edit", onclick: edit }));
  function edit() {
    const box = el("textarea", { rows: "3", "aria-label": `Commands of ${a.name}` });
    box.value = a.commands.join("\n");
    const error = el("p", { class: "field-error" });
    cell.replaceChildren(box, el("button", { type: "button", class: "primary", text: "Save", onclick: async () => {
      try {
        await api("PATCH", `/api/agents/${a.id}`, { commands: commandLines(box.value) });
        await loadAgents();
      } catch (e) {
        if (e.status !== 401) error.textContent = e.message;
      }
    } }), el("button", { type: "button", text: "Cancel", onclick: show }), error);
    box.focus();
  }
  show();
  return cell;
}

$("agent-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  clearErrors("agent-form");
  try {
    const agent = await api("POST", "/api/agents",
      { name: $("agent-name").value.trim(), commands: commandLines($("agent-commands").value) });
    $("agent-token-name").textContent = agent.name;
    $("agent-token-value").textContent = agent.token;
    $("agent-token").hidden = false;
    $("agent-name").value = "";
    $("agent-commands").value = "";
    await loadAgents();
  } catch (error) {
    if (error.status === 401) return;
    if (!showFieldErrors("agent-form", error)) $("agent-form").querySelector("[data-error-for=name]").textContent = error.message;
  }
});

$("agent-token-copy").addEventListener("click", async () => {
  try {
    await navigator.clipboard.writeText($("agent-token-value").textContent);
    $("agent-token-copy").textContent = "Copied";
  } catch (error) {
    const range = document.createRange(); // no clipboard permission: select it for Ctrl-C
    range.selectNodeContents($("agent-token-value"));
    getSelection().removeAllRanges();
    getSelection().addRange(range);
  }
});

// ---- start ---------------------------------------------------------------------------------------------
(async function start() {
  if (!sessionStorage.getItem(TOKEN_KEY)) return logout("");
  try {
    await enter(await api("GET", "/api/auth/me"));
  } catch (error) {
    if (error.status !== 401) logout("");
  }
})();

// The customer portal: one account's webhooks, secrets, test events and delivery log, over the
// JSON API with the portal session.
import {
  h, $, fill, client, time, badge, toUtc, toast, showError, dialog, confirmAction, secretBox,
  pretty, empty, field,
} from "/assets/ui.js";

const api = client("portal", () => showSignIn("Your session has ended. Sign in again or open a new portal link."));
const state = { catalog: [], webhooks: [], logFilter: {}, logPage: 0, liveTimer: null, session: null };

// ---------- session ----------

async function start() {
  const fragment = new URLSearchParams(location.hash.slice(1));
  const token = fragment.get("token");
  if (token) {
    // The link's token leaves the address bar (and history) before anything else happens.
    history.replaceState(null, "", location.pathname);
    try {
      const session = await api.post("/portal/session", { token });
      return enter(session);
    } catch (e) {
      return showSignIn(e.message);
    }
  }
  try {
    enter(await api.get("/portal/session"));
  } catch (e) {
    showSignIn();
  }
}

function showSignIn(message) {
  stopLive();
  $("#app").hidden = true;
  fill($("#who"));
  $("#signin").hidden = false;
  fill($("#signin-error"), message ? h("p", { class: "error", role: "alert" }, message) : null);
  $("#signin-key").focus();
}

$("#signin-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const key = $("#signin-key").value.trim();
  try {
    const session = await api.post("/portal/session", { apiKey: key });
    $("#signin-key").value = "";
    enter(session);
  } catch (e) {
    showError($("#signin-error"), e);
  }
});

function enter(session) {
  state.session = session;
  api.setCsrf(session.csrfToken);
  $("#signin").hidden = true;
  $("#app").hidden = false;
  fill($("#who"),
    h("span", { class: "account", title: session.accountId }, session.accountName || session.accountId),
    h("span", { class: "muted small" }, "session until ", time(session.expiresAt)),
    h("button", { type: "button", id: "signout", onclick: signOut }, "Sign out"));
  loadCatalog().then(() => showTab(currentTab()));
}

async function signOut() {
  await fetch("/portal/session", { method: "DELETE", credentials: "same-origin" });
  state.session = null;
  api.setCsrf(null);
  showSignIn("You are signed out.");
}

async function loadCatalog() {
  try {
    state.catalog = await api.get("/api/v3/webhook/types");
  } catch (e) {
    state.catalog = [];
  }
}

// ---------- tabs ----------

const TABS = { overview: renderOverview, webhooks: renderWebhooks, deliveries: renderDeliveries, settings: renderSettings };

function currentTab() {
  const name = location.hash.slice(1);
  return TABS[name] ? name : "overview";
}

function showTab(name) {
  stopLive();
  for (const tab of Object.keys(TABS)) {
    $(`#tab-${tab}`).hidden = tab !== name;
    const link = document.querySelector(`[data-tab="${tab}"]`);
    if (tab === name) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  TABS[name]($(`#tab-${name}`));
}

window.addEventListener("hashchange", () => { if (state.session) showTab(currentTab()); });

// ---------- overview: counts and Retry all failed ----------

async function renderOverview(root) {
  fill(root, h("h1", {}, "Overview"), h("div", { id: "counts", class: "counts", "aria-live": "polite" }, "Loading…"),
    h("p", { class: "muted small" }, "Counts refresh every 5 seconds."), retryAllForm(), replayForm());
  await refreshCounts();
  state.liveTimer = setInterval(refreshCounts, 5000);
}

async function refreshCounts() {
  const box = $("#counts");
  if (!box) return;
  try {
    const counts = await api.get("/api/v3/webhook/status");
    fill(box, ["pending", "retrying", "delivered", "failed"].map((status) =>
      h("div", { class: `count ${status}`, "data-status": status },
        h("div", { class: "count-value", id: `count-${status}` }, String(counts[status])),
        h("div", { class: "count-label" }, badge(status)))));
  } catch (e) {
    showError(box, e);
  }
}

function retryAllForm() {
  const webhook = h("select", { id: "retry-webhook" }, h("option", { value: "" }, "All webhooks"));
  api.get("/api/v3/webhook?size=100").then((page) => {
    for (const w of page.content) webhook.append(h("option", { value: w.id }, w.url));
  }).catch(() => {});
  const since = h("input", { id: "retry-since", type: "datetime-local", step: 1 });
  const until = h("input", { id: "retry-until", type: "datetime-local", step: 1 });
  const result = h("div", { id: "retry-result", role: "status" });
  const form = h("form", { class: "card stack", id: "retry-all" },
    h("h2", {}, "Retry failed deliveries"),
    h("p", { class: "muted" }, "Sends every failed delivery again, now. Narrow it to one webhook or a time range (in your time zone) if you like."),
    h("div", { class: "grid3" }, field("Webhook", webhook), field("Created from", since), field("Created until", until)),
    h("div", { class: "row" }, h("button", { type: "submit", class: "primary", id: "retry-all-button" }, "Retry all failed"), result));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const body = {};
    if (webhook.value) body.webhookId = webhook.value;
    if (toUtc(since.value)) body.since = toUtc(since.value);
    if (toUtc(until.value)) body.until = toUtc(until.value);
    try {
      const answer = await api.post("/api/v3/webhook/retry", body);
      fill(result, h("span", { class: "ok-text" }, `${answer.retried} ${answer.retried === 1 ? "delivery" : "deliveries"} queued again.`));
      setTimeout(refreshCounts, 800);
      setTimeout(refreshCounts, 2500);
    } catch (e) {
      showError(result, e);
    }
  });
  return form;
}

// ---------- replay and recovery (background jobs) ----------

function replayForm() {
  const webhook = h("select", { id: "replay-webhook" }, h("option", { value: "" }, "All webhooks"));
  api.get("/api/v3/webhook?size=100").then((page) => {
    for (const w of page.content) webhook.append(h("option", { value: w.id }, w.url));
  }).catch(() => {});
  const mode = h("select", { id: "replay-mode" },
    h("option", { value: "replay" }, "Send finished deliveries again"),
    h("option", { value: "missing" }, "Send a webhook the events it missed"));
  const status = h("select", { id: "replay-status" },
    h("option", { value: "" }, "Delivered and failed"),
    h("option", { value: "delivered" }, "Only delivered"),
    h("option", { value: "failed" }, "Only failed"));
  const since = h("input", { id: "replay-since", type: "datetime-local", step: 1, required: true });
  const until = h("input", { id: "replay-until", type: "datetime-local", step: 1 });
  const result = h("div", { id: "replay-result", role: "status", "aria-live": "polite" });
  const form = h("form", { class: "card stack", id: "replay" },
    h("h2", {}, "Replay"),
    h("p", { class: "muted" }, "Sends the deliveries created in a time range again, under the same webhook-id; or sends one webhook every event since a time that it matches and never got. Large ranges go on in the background."),
    h("div", { class: "grid3" }, field("What", mode), field("Webhook", webhook), field("Deliveries", status)),
    h("div", { class: "grid3" }, field("From", since), field("Until (empty: now)", until)),
    h("div", { class: "row" }, h("button", { type: "submit", class: "primary", id: "replay-button" }, "Replay"), result));
  mode.addEventListener("change", () => {
    status.disabled = until.disabled = mode.value === "missing";
  });
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    if (mode.value === "missing" && !webhook.value) {
      fill(result, h("span", { class: "bad-text" }, "Choose the webhook to send the events it missed."));
      return;
    }
    try {
      let job;
      if (mode.value === "missing") {
        job = await api.post(`/api/v3/webhook/${encodeURIComponent(webhook.value)}/replay-missing`, { since: toUtc(since.value) });
      } else {
        const body = { since: toUtc(since.value), until: toUtc(until.value) || new Date().toISOString() };
        if (webhook.value) body.webhookId = webhook.value;
        if (status.value) body.status = status.value;
        job = await api.post("/api/v3/webhook/replay", body);
      }
      showJob(result, job);
    } catch (e) {
      showError(result, e);
    }
  });
  return form;
}

/** A job's progress, followed every second until it ends. */
async function showJob(target, job) {
  for (;;) {
    const sent = `${job.done} of ${job.total} sent`;
    const text = job.status === "running" ? `Running: ${sent} so far…`
      : job.status === "completed" ? `Done: ${sent}.` : `Stopped: ${job.error || "failed"} (${sent}).`;
    fill(target, h("span", { class: job.status === "failed" ? "bad-text" : "ok-text", "data-job": job.id, "data-status": job.status }, text));
    if (job.status !== "running" || !target.isConnected) break;
    await new Promise((resolve) => setTimeout(resolve, 1000));
    try {
      job = await api.get(`/api/v3/webhook/jobs/${encodeURIComponent(job.id)}`);
    } catch (e) {
      showError(target, e);
      break;
    }
  }
  setTimeout(refreshCounts, 800);
}

// ---------- webhooks ----------

async function renderWebhooks(root) {
  fill(root,
    h("div", { class: "head-row" }, h("h1", {}, "Webhooks"),
      h("button", { type: "button", class: "primary", id: "new-webhook", onclick: () => editWebhook(null) }, "New webhook")),
    h("div", { id: "webhook-list" }, "Loading…"));
  await refreshWebhooks();
}

async function refreshWebhooks() {
  const list = $("#webhook-list");
  try {
    const page = await api.get("/api/v3/webhook?size=100");
    state.webhooks = page.content;
    if (!list) return;
    if (page.content.length === 0) {
      return fill(list, empty("No webhooks yet. Create one to receive events at your URL."));
    }
    fill(list, h("ul", { class: "webhooks" }, page.content.map(webhookItem)));
  } catch (e) {
    if (list) showError(list, e);
  }
}

/** Why Hookline switched the webhook off, or since when its endpoint has been failing. */
function health(w) {
  if (!w.active && w.disabledReason) {
    return h("p", { class: "health bad" }, "Switched off ", time(w.disabledAt), ": ", w.disabledReason,
      ". Fix the endpoint, then activate the webhook.");
  }
  if (w.active && w.failingSince) {
    return h("p", { class: "health warn" }, badge("failing"), " Every attempt has failed since ", time(w.failingSince), ".");
  }
  return null;
}

function webhookItem(w) {
  const result = h("div", { class: "ping-result", role: "status" });
  return h("li", { class: "card webhook", "data-id": w.id },
    h("div", { class: "webhook-head" },
      h("div", { class: "webhook-url mono" }, w.url),
      badge(w.active ? "active" : "inactive")),
    w.description ? h("p", { class: "muted" }, w.description) : null,
    health(w),
    h("div", { class: "tags" }, w.events.map((e) => h("span", { class: "tag mono" }, e))),
    h("div", { class: "muted small" }, h("span", { class: "mono" }, w.id), " · created ", time(w.createdAt),
      w.rateLimit ? h("span", { class: "rate-limit" }, ` · at most ${w.rateLimit} a second`) : null,
      w.ordered ? h("span", { class: "ordered" }, " · in order") : null),
    h("div", { class: "actions" },
      h("button", { type: "button", onclick: () => editWebhook(w) }, "Edit"),
      h("button", { type: "button", onclick: () => toggleActive(w) }, w.active ? "Deactivate" : "Activate"),
      h("button", { type: "button", onclick: () => ping(w, result) }, "Ping"),
      h("button", { type: "button", onclick: () => signingSecret(w) }, "Signing secret"),
      h("button", { type: "button", onclick: () => webhookToken(w) }, "Token"),
      h("button", { type: "button", onclick: () => { location.hash = "deliveries"; state.logFilter = { webhookId: w.id }; } }, "Deliveries"),
      h("button", { type: "button", class: "danger", onclick: () => deleteWebhook(w) }, "Delete")),
    result);
}

/** Checkboxes for every catalog type, plus the wildcards (`*`, `reading.*`, ...). */
function eventPicker(selected) {
  const names = state.catalog.map((t) => t.name);
  const namespaces = new Set();
  for (const name of names) {
    const parts = name.split(".");
    for (let i = 1; i < parts.length; i++) namespaces.add(`${parts.slice(0, i).join(".")}.*`);
  }
  const chosen = new Set(selected);
  const filter = h("input", { type: "search", placeholder: "Filter event types", "aria-label": "Filter event types" });
  const option = (name, description) => h("label", { class: "pick", "data-name": name },
    h("input", { type: "checkbox", name: "events", value: name, checked: chosen.has(name) }),
    h("span", { class: "mono" }, name), description ? h("span", { class: "muted small" }, description) : null);
  const list = h("div", { class: "picker", role: "group", "aria-label": "Event types" },
    option("*", "every event type but Hookline's own hookline.*"),
    [...namespaces].sort().map((ns) => option(ns, `every ${ns.slice(0, -2)} event`)),
    state.catalog.map((t) => option(t.name, t.description)),
    // Subscriptions no longer in the catalog still show, so an edit does not drop them.
    [...chosen].filter((n) => n !== "*" && !namespaces.has(n) && !names.includes(n)).map((n) => option(n, "")));
  filter.addEventListener("input", () => {
    const q = filter.value.trim().toLowerCase();
    for (const label of list.children) label.hidden = q !== "" && !label.dataset.name.toLowerCase().includes(q);
  });
  return { element: h("div", { class: "stack" }, filter, list), values: () => [...list.querySelectorAll("input:checked")].map((i) => i.value) };
}

async function editWebhook(existing) {
  const url = h("input", { id: "wh-url", type: "url", required: true, value: existing ? existing.url : "", placeholder: "https://example.com/hooks" });
  const description = h("input", { id: "wh-description", value: existing && existing.description ? existing.description : "" });
  const active = h("input", { id: "wh-active", type: "checkbox", checked: existing ? existing.active : true });
  const rateLimit = h("input", { id: "wh-rate-limit", type: "number", min: "1", max: "500", step: "1", inputmode: "numeric",
    value: existing && existing.rateLimit ? String(existing.rateLimit) : "", placeholder: "No limit" });
  const ordered = h("input", { id: "wh-ordered", type: "checkbox", checked: existing ? !!existing.ordered : false,
    "aria-describedby": "wh-ordered-hint" });
  const picker = eventPicker(existing ? existing.events : []);
  const token = existing ? null : h("input", { id: "wh-token", type: "password", autocomplete: "off" });
  const error = h("div", { id: "wh-error" });
  const content = h("form", { class: "stack", id: "webhook-form" },
    field("URL", url, "Where Hookline POSTs each event."),
    h("div", { class: "field" }, h("span", { class: "label" }, "Events"), picker.element),
    field("Description", description),
    field("Rate limit (deliveries a second)", rateLimit, "Optional, 1 to 500. Deliveries above it wait their turn; none is dropped."),
    h("div", {},
      h("label", { class: "check" }, ordered, " Deliver in order, one at a time"),
      h("p", { class: "hint", id: "wh-ordered-hint" }, "The next delivery starts only once the one before it is delivered or has failed its last attempt.")),
    h("label", { class: "check" }, active, " Active"),
    token ? field("Authorization token (optional)", token, "Sent in a header with every delivery; shown once.") : null,
    error);
  const box = h("dialog", { class: "dialog wide", "aria-label": existing ? "Edit webhook" : "New webhook" });
  const close = () => { box.close(); box.remove(); };
  const save = h("button", { type: "submit", class: "primary", form: "webhook-form", id: "wh-save" }, existing ? "Save" : "Create webhook");
  box.append(
    h("div", { class: "dialog-head" }, h("h2", {}, existing ? "Edit webhook" : "New webhook"),
      h("button", { type: "button", class: "icon", "aria-label": "Close", onclick: close }, "×")),
    h("div", { class: "dialog-body" }, content),
    h("div", { class: "dialog-actions" }, h("button", { type: "button", onclick: close }, "Cancel"), save));
  box.addEventListener("cancel", (e) => { e.preventDefault(); close(); });
  content.addEventListener("submit", async (event) => {
    event.preventDefault();
    const events = picker.values();
    if (events.length === 0) return showError(error, new Error("events: choose at least one event type"));
    const body = { url: url.value.trim(), events, active: active.checked, description: description.value.trim() || null,
      rateLimit: rateLimit.value.trim() ? Number(rateLimit.value.trim()) : null, ordered: ordered.checked };
    try {
      let saved;
      if (existing) {
        saved = await api.patch(`/api/v3/webhook/${encodeURIComponent(existing.id)}`, body);
      } else {
        if (!body.description) delete body.description;
        if (body.rateLimit === null) delete body.rateLimit;
        if (token && token.value) body.authorizationToken = token.value;
        saved = await api.post("/api/v3/webhook", body);
      }
      close();
      toast(existing ? "Webhook saved." : "Webhook created.");
      if (saved.authorizationToken) {
        await dialog("Authorization token", secretBox(saved.authorizationToken, "Shown once. Hookline sends it in a header with every delivery."));
      }
      refreshWebhooks();
    } catch (e) {
      showError(error, e);
    }
  });
  document.body.append(box);
  box.showModal();
  url.focus();
}

async function toggleActive(w) {
  try {
    await api.patch(`/api/v3/webhook/${encodeURIComponent(w.id)}`, { active: !w.active });
    toast(w.active ? "Webhook deactivated." : "Webhook activated.");
    refreshWebhooks();
  } catch (e) {
    showError(null, e);
  }
}

async function deleteWebhook(w) {
  const sure = await confirmAction("Delete webhook", `Delete the webhook to ${w.url}? Deliveries to it stop at once. This cannot be undone.`);
  if (!sure) return;
  try {
    await api.del(`/api/v3/webhook/${encodeURIComponent(w.id)}`);
    toast("Webhook deleted.");
    refreshWebhooks();
  } catch (e) {
    showError(null, e);
  }
}

async function ping(w, target) {
  fill(target, h("span", { class: "muted" }, "Pinging…"));
  try {
    const answer = await api.post(`/api/v3/webhook/${encodeURIComponent(w.id)}/ping`);
    fill(target, answer.ok
      ? h("span", { class: "ok-text" }, `Pong: the endpoint answered ${answer.status} in ${answer.latencyMs} ms.`)
      : h("span", { class: "bad-text" }, `No pong${answer.status ? ` (status ${answer.status})` : ""} after ${answer.latencyMs} ms`,
        answer.error ? `: ${answer.error}` : "."));
  } catch (e) {
    showError(target, e);
  }
}

async function signingSecret(w) {
  const path = `/api/v3/webhook/${encodeURIComponent(w.id)}/signing-secret`;
  const body = h("div", { class: "stack" });
  const show = () => fill(body,
    h("p", {}, "Receivers verify the ", h("code", {}, "webhook-signature"), " header with this secret (Standard Webhooks)."),
    h("div", { class: "row" },
      h("button", { type: "button", id: "reveal-secret", onclick: reveal }, "Reveal"),
      h("button", { type: "button", id: "rotate-secret", onclick: rotate }, "Rotate")),
    h("div", { id: "secret-area" }));
  async function reveal() {
    try {
      const { secret } = await api.get(path);
      fill($("#secret-area"), secretBox(secret));
    } catch (e) {
      showError($("#secret-area"), e);
    }
  }
  async function rotate() {
    const sure = await confirmAction("Rotate signing secret", "Make a new signing secret? The current one keeps signing for 24 hours, so deliveries carry both signatures while your receiver switches over.", "Rotate");
    if (!sure) return;
    try {
      await api.post(`${path}/rotate`);
      const { secret } = await api.get(path);
      fill($("#secret-area"), secretBox(secret, "The new secret. The previous one keeps signing for 24 hours (the grace period)."));
      toast("Signing secret rotated.");
    } catch (e) {
      showError($("#secret-area"), e);
    }
  }
  show();
  await dialog(`Signing secret · ${w.url}`, body);
}

async function webhookToken(w) {
  const path = `/api/v3/webhook/${encodeURIComponent(w.id)}`;
  const input = h("input", { id: "token-input", type: "password", autocomplete: "off" });
  const area = h("div", { id: "token-area" });
  const set = async (value) => {
    try {
      const saved = await api.patch(path, { authorizationToken: value });
      fill(area, value === null
        ? h("p", { class: "ok-text" }, "Token cleared: deliveries no longer carry it.")
        : secretBox(saved.authorizationToken, "Shown once. Hookline sends it in a header with every delivery."));
      input.value = "";
    } catch (e) {
      showError(area, e);
    }
  };
  const generate = () => {
    const bytes = new Uint8Array(24);
    crypto.getRandomValues(bytes);
    set(Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join(""));
  };
  await dialog(`Authorization token · ${w.url}`, h("div", { class: "stack" },
    h("p", { class: "muted" }, "A token Hookline sends in a header with every delivery to this webhook. It is never shown again after it is set."),
    field("New token", input),
    h("div", { class: "row" },
      h("button", { type: "button", id: "token-set", onclick: () => input.value ? set(input.value) : showError(area, new Error("authorizationToken: type a token or generate one")) }, "Set"),
      h("button", { type: "button", id: "token-generate", onclick: generate }, "Generate"),
      h("button", { type: "button", id: "token-clear", class: "danger", onclick: () => set(null) }, "Clear")),
    area));
}

// ---------- deliveries ----------

async function renderDeliveries(root) {
  if (state.webhooks.length === 0) {
    try { state.webhooks = (await api.get("/api/v3/webhook?size=100")).content; } catch (e) { /* the filter lists none */ }
  }
  const f = state.logFilter;
  const status = h("select", { id: "log-status" }, ["", "pending", "retrying", "delivered", "failed"].map((s) =>
    h("option", { value: s, selected: f.status === s }, s || "Any status")));
  const webhook = h("select", { id: "log-webhook" }, h("option", { value: "" }, "Any webhook"),
    state.webhooks.map((w) => h("option", { value: w.id, selected: f.webhookId === w.id }, w.url)));
  const type = h("select", { id: "log-type" }, h("option", { value: "" }, "Any event type"),
    state.catalog.map((t) => h("option", { value: t.name, selected: f.type === t.name }, t.name)));
  const times = [
    ["startTimestamp", "Created from"], ["endTimestamp", "Created until"],
    ["startLastRetryTimestamp", "Last retry from"], ["endLastRetryTimestamp", "Last retry until"],
  ].map(([name, label]) => [name, label, h("input", { type: "datetime-local", step: 1, id: `log-${name}` })]);
  const live = h("input", { type: "checkbox", id: "log-live" });
  const form = h("form", { class: "card filters", id: "log-filters" },
    h("div", { class: "grid3" }, field("Status", status), field("Webhook", webhook), field("Event type", type),
      times.map(([, label, input]) => field(label, input))),
    h("div", { class: "row" },
      h("button", { type: "submit", class: "primary" }, "Apply filters"),
      h("button", { type: "reset" }, "Clear"),
      h("label", { class: "check" }, live, " Live refresh (every 5 s)")));
  const apply = () => {
    state.logFilter = { status: status.value, webhookId: webhook.value, type: type.value };
    for (const [name, , input] of times) state.logFilter[name] = toUtc(input.value);
    state.logPage = 0;
    loadLogs();
  };
  form.addEventListener("submit", (e) => { e.preventDefault(); apply(); });
  form.addEventListener("reset", () => setTimeout(apply, 0));
  live.addEventListener("change", () => {
    stopLive();
    if (live.checked) state.liveTimer = setInterval(() => loadLogs(true), 5000);
  });
  fill(root, h("h1", {}, "Deliveries"), form, h("div", { id: "log-list" }, "Loading…"));
  await loadLogs();
}

function stopLive() {
  if (state.liveTimer) clearInterval(state.liveTimer);
  state.liveTimer = null;
}

async function loadLogs(quiet) {
  const list = $("#log-list");
  if (!list) return stopLive();
  const query = new URLSearchParams({ page: String(state.logPage), size: "20" });
  for (const [key, value] of Object.entries(state.logFilter)) if (value) query.set(key, value);
  try {
    const page = await api.get(`/api/v3/webhook/logs?${query}`);
    if (page.content.length === 0) {
      return fill(list, empty(Object.values(state.logFilter).some(Boolean)
        ? "No deliveries match these filters."
        : "No deliveries yet. Fire a test event from “Secrets & tests” to see one here."));
    }
    const rows = page.content.map((d) => h("tr", { "data-id": d.id, "data-status": d.status },
      h("td", {}, badge(d.status)),
      h("td", { class: "mono" }, d.webhookType),
      h("td", { class: "mono url-cell", title: d.webhookUrl }, d.webhookUrl),
      h("td", {}, d.lastResponseStatus ? String(d.lastResponseStatus) : "—"),
      h("td", {}, String(d.retryAttempts)),
      h("td", {}, time(d.createTimestamp)),
      h("td", { class: "actions" },
        h("button", { type: "button", class: "small", onclick: () => showDelivery(d.id) }, "Details"),
        d.status === "failed" ? h("button", { type: "button", class: "small", onclick: () => retryOne(d.id) }, "Retry") : null)));
    const pages = Math.max(1, Math.ceil(page.total / page.size));
    fill(list,
      h("div", { class: "table-wrap" }, h("table", { class: "logs" },
        h("thead", {}, h("tr", {}, ["Status", "Event", "Webhook", "HTTP", "Retries", "Created", ""].map((c) => h("th", { scope: "col" }, c)))),
        h("tbody", {}, rows))),
      h("div", { class: "pager" },
        h("button", { type: "button", disabled: page.first, onclick: () => { state.logPage--; loadLogs(); } }, "← Newer"),
        h("span", { class: "muted" }, `Page ${page.page + 1} of ${pages} · ${page.total} ${page.total === 1 ? "delivery" : "deliveries"}`),
        h("button", { type: "button", disabled: page.last, onclick: () => { state.logPage++; loadLogs(); } }, "Older →")));
  } catch (e) {
    if (!quiet) showError(list, e);
  }
}

async function retryOne(id) {
  try {
    await api.post(`/api/v3/webhook/logs/${encodeURIComponent(id)}/retry`);
    toast("Delivery queued again.");
    setTimeout(() => loadLogs(true), 1000);
    return true;
  } catch (e) {
    showError(null, e);
    return false;
  }
}

async function showDelivery(id) {
  let d;
  try {
    d = await api.get(`/api/v3/webhook/logs/${encodeURIComponent(id)}`);
  } catch (e) {
    return showError(null, e);
  }
  const attempts = d.attempts || [];
  const body = h("div", { class: "stack delivery", id: "delivery-detail" },
    h("dl", { class: "facts" },
      h("dt", {}, "Status"), h("dd", {}, badge(d.status)),
      h("dt", {}, "Delivery"), h("dd", { class: "mono" }, d.id),
      h("dt", {}, "Event"), h("dd", { class: "mono" }, `${d.webhookType} · ${d.eventId}`),
      h("dt", {}, "Webhook"), h("dd", { class: "mono" }, d.webhookUrl),
      h("dt", {}, "Created"), h("dd", {}, time(d.createTimestamp)),
      h("dt", {}, "Last attempt"), h("dd", {}, time(d.lastRetryTimestamp)),
      h("dt", {}, "Next attempt"), h("dd", {}, time(d.nextRetryTimestamp))),
    h("h3", {}, "Payload"),
    h("pre", { class: "code", id: "delivery-payload" }, pretty(d.payload)),
    h("h3", {}, `Attempts (${attempts.length})`),
    attempts.length === 0 ? empty("No attempt yet.") : h("ol", { class: "attempts" }, attempts.map((a) =>
      h("li", { class: "attempt" },
        h("div", { class: "row" },
          a.statusCode ? h("span", { class: `badge ${a.statusCode < 300 ? "ok" : "bad"}` }, String(a.statusCode)) : h("span", { class: "badge bad" }, "no answer"),
          h("span", {}, `${a.durationMs} ms`), time(a.timestamp)),
        a.error ? h("p", { class: "bad-text" }, a.error) : null,
        a.responseBody ? h("details", {}, h("summary", {}, "Response body"), h("pre", { class: "code response-body" }, a.responseBody)) : null))));
  const buttons = [{ label: "Close", value: null }];
  if (d.status === "failed") buttons.unshift({ label: "Retry", value: "retry", class: "primary" });
  const choice = await dialog("Delivery", body, buttons);
  if (choice === "retry") retryOne(d.id);
}

// ---------- secrets and test events ----------

async function renderSettings(root) {
  fill(root, h("h1", {}, "Secrets & test events"), accountSecretCard(), testEventCard());
  refreshAccountSecret();
}

function accountSecretCard() {
  const input = h("input", { id: "account-secret-input", type: "password", autocomplete: "off" });
  return h("div", { class: "card stack", id: "account-secret" },
    h("h2", {}, "Account webhook secret"),
    h("p", { class: "muted" }, "Sent as a header with every delivery to every webhook of this account, so receivers can check the request came from us."),
    h("div", { id: "account-secret-state" }, "Loading…"),
    field("New secret (leave empty to generate one)", input),
    h("div", { class: "row" },
      h("button", { type: "button", id: "account-secret-set", class: "primary", onclick: () => setAccountSecret(input) }, "Set"),
      h("button", { type: "button", id: "account-secret-reveal", onclick: revealAccountSecret }, "Reveal"),
      h("button", { type: "button", id: "account-secret-clear", class: "danger", onclick: clearAccountSecret }, "Clear")),
    h("div", { id: "account-secret-area" }));
}

async function refreshAccountSecret() {
  const target = $("#account-secret-state");
  try {
    await api.get("/api/v3/webhook-secret");
    fill(target, badge("active"), " A secret is set.");
  } catch (e) {
    if (e.status === 404) fill(target, badge("inactive"), " No secret is set.");
    else showError(target, e);
  }
}

async function setAccountSecret(input) {
  try {
    const body = input.value ? { secret: input.value } : undefined;
    const { secret } = await api.post("/api/v3/webhook-secret", body);
    input.value = "";
    fill($("#account-secret-area"), secretBox(secret, "Deliveries carry this secret from now on."));
    refreshAccountSecret();
  } catch (e) {
    showError($("#account-secret-area"), e);
  }
}

async function revealAccountSecret() {
  try {
    const { secret } = await api.get("/api/v3/webhook-secret");
    fill($("#account-secret-area"), secretBox(secret));
  } catch (e) {
    showError($("#account-secret-area"), e.status === 404 ? new Error("No secret is set.") : e);
  }
}

async function clearAccountSecret() {
  if (!await confirmAction("Clear account secret", "Stop sending the account secret with deliveries?", "Clear")) return;
  try {
    await api.del("/api/v3/webhook-secret");
    fill($("#account-secret-area"), h("p", { class: "ok-text" }, "Secret cleared."));
    refreshAccountSecret();
  } catch (e) {
    showError($("#account-secret-area"), e);
  }
}

function testEventCard() {
  const type = h("select", { id: "test-type" }, state.catalog.map((t) => h("option", { value: t.name }, t.name)));
  const payload = h("textarea", { id: "test-payload", rows: 6, class: "mono", placeholder: "{ } — leave empty for a realistic sample" });
  const result = h("div", { id: "test-result", role: "status" });
  const form = h("form", { class: "card stack", id: "test-event" },
    h("h2", {}, "Fire a test event"),
    h("p", { class: "muted" }, "Publishes an event to your own active webhooks that subscribe to its type."),
    field("Event type", type), field("Payload (JSON, optional)", payload),
    h("div", { class: "row" }, h("button", { type: "submit", class: "primary", id: "test-send" }, "Send test event"), result));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const body = { type: type.value };
    if (payload.value.trim()) {
      try {
        body.payload = JSON.parse(payload.value);
      } catch (e) {
        return showError(result, new Error(`payload: is not valid JSON (${e.message})`));
      }
    }
    try {
      const answer = await api.post("/api/v3/test/webhook", body);
      fill(result, h("span", { class: answer.deliveries ? "ok-text" : "bad-text" },
        answer.deliveries
          ? `Sent ${answer.id} to ${answer.deliveries} ${answer.deliveries === 1 ? "webhook" : "webhooks"}. See Deliveries.`
          : `Sent ${answer.id}, but no active webhook subscribes to ${body.type}.`));
    } catch (e) {
      showError(result, e);
    }
  });
  return form;
}

start();

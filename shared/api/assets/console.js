// The platform console: accounts, API keys, event types and test publishing, with the admin
// session. "Open portal" asks for a portal link and opens it in a new tab.
import {
  h, $, fill, client, time, toast, showError, dialog, confirmAction, secretBox, empty, field,
} from "/assets/ui.js";

const api = client("console", () => showSignIn("Your session has ended. Sign in again."));
const state = { session: null, accounts: [], page: 0 };

async function start() {
  try {
    enter(await api.get("/console/session"));
  } catch (e) {
    showSignIn();
  }
}

function showSignIn(message) {
  $("#app").hidden = true;
  fill($("#who"));
  $("#signin").hidden = false;
  fill($("#signin-error"), message ? h("p", { class: "error", role: "alert" }, message) : null);
  $("#signin-key").focus();
}

$("#signin-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  try {
    const session = await api.post("/console/session", { apiKey: $("#signin-key").value.trim() });
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
    h("span", { class: "account" }, "Platform admin"),
    h("span", { class: "muted small" }, "session until ", time(session.expiresAt)),
    h("button", { type: "button", id: "signout", onclick: signOut }, "Sign out"));
  showTab(currentTab());
}

async function signOut() {
  await fetch("/console/session", { method: "DELETE", credentials: "same-origin" });
  api.setCsrf(null);
  state.session = null;
  showSignIn("You are signed out.");
}

const TABS = { accounts: renderAccounts, "event-types": renderEventTypes, publish: renderPublish };

function currentTab() {
  const name = location.hash.slice(1);
  return TABS[name] ? name : "accounts";
}

function showTab(name) {
  for (const tab of Object.keys(TABS)) {
    $(`#tab-${tab}`).hidden = tab !== name;
    const link = document.querySelector(`[data-tab="${tab}"]`);
    if (tab === name) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  TABS[name]($(`#tab-${name}`));
}

window.addEventListener("hashchange", () => { if (state.session) showTab(currentTab()); });

// ---------- accounts ----------

async function renderAccounts(root) {
  const name = h("input", { id: "account-name", required: true, maxlength: 200, placeholder: "Acme Clinic" });
  const result = h("div", { id: "account-created" });
  const form = h("form", { class: "card stack", id: "new-account" },
    h("h2", {}, "New account"),
    h("div", { class: "row" }, field("Name", name), h("button", { type: "submit", class: "primary", id: "create-account" }, "Create account")),
    result);
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    try {
      const created = await api.post("/api/v3/accounts", { name: name.value.trim() });
      name.value = "";
      fill(result, h("p", {}, "Created ", h("strong", {}, created.name), " (", h("span", { class: "mono", id: "new-account-id" }, created.id), "). Its API key, shown only now:"),
        secretBox(created.apiKey, "Give it to the customer, or open their portal instead."));
      loadAccounts();
    } catch (e) {
      showError(result, e);
    }
  });
  fill(root, h("h1", {}, "Accounts"), form, h("div", { id: "account-list" }, "Loading…"));
  await loadAccounts();
}

async function loadAccounts() {
  const list = $("#account-list");
  try {
    const page = await api.get(`/api/v3/accounts?size=50&page=${state.page}`);
    state.accounts = page.content;
    if (page.total === 0) return fill(list, empty("No accounts yet. Create one above."));
    fill(list,
      h("div", { class: "table-wrap" }, h("table", {},
        h("thead", {}, h("tr", {}, ["Name", "Id", "Created", ""].map((c) => h("th", { scope: "col" }, c)))),
        h("tbody", {}, page.content.map((a) => h("tr", { "data-id": a.id },
          h("td", {}, a.name), h("td", { class: "mono" }, a.id), h("td", {}, time(a.createdAt)),
          h("td", { class: "actions" },
            h("button", { type: "button", class: "small primary", onclick: () => openPortal(a) }, "Open portal"),
            h("button", { type: "button", class: "small", onclick: () => manageKeys(a) }, "API keys"))))))),
      h("div", { class: "pager" },
        h("button", { type: "button", disabled: page.first, onclick: () => { state.page--; loadAccounts(); } }, "← Previous"),
        h("span", { class: "muted" }, `${page.total} ${page.total === 1 ? "account" : "accounts"}`),
        h("button", { type: "button", disabled: page.last, onclick: () => { state.page++; loadAccounts(); } }, "Next →")));
  } catch (e) {
    showError(list, e);
  }
}

async function openPortal(account) {
  // The tab is opened now, in the click, so pop-up blockers let it through.
  const tab = window.open("", "_blank");
  try {
    const link = await api.post(`/api/v3/accounts/${encodeURIComponent(account.id)}/portal-links`, {});
    if (tab) {
      tab.opener = null;
      tab.location = link.url;
    } else {
      location.assign(link.url);
    }
  } catch (e) {
    if (tab) tab.close();
    showError(null, e);
  }
}

async function manageKeys(account) {
  const body = h("div", { class: "stack", id: "keys" });
  const render = async (created) => {
    try {
      const details = await api.get(`/api/v3/accounts/${encodeURIComponent(account.id)}`);
      fill(body,
        created ? secretBox(created.apiKey, "The new key, shown only now.") : null,
        details.apiKeys.length === 0 ? empty("This account has no API key.") :
          h("ul", { class: "keys" }, details.apiKeys.map((k) => h("li", { class: "row" },
            h("span", { class: "mono" }, k.id), h("span", { class: "muted small" }, "created ", time(k.createdAt)),
            h("button", { type: "button", class: "small danger", onclick: () => revoke(k) }, "Revoke")))),
        h("button", { type: "button", id: "add-key", class: "primary", onclick: add }, "Add API key"));
    } catch (e) {
      showError(body, e);
    }
  };
  const add = async () => {
    try {
      render(await api.post(`/api/v3/accounts/${encodeURIComponent(account.id)}/api-keys`));
    } catch (e) {
      showError(body, e);
    }
  };
  const revoke = async (key) => {
    if (!await confirmAction("Revoke API key", `Revoke ${key.id}? Calls with it fail at once.`, "Revoke")) return;
    try {
      await api.del(`/api/v3/accounts/${encodeURIComponent(account.id)}/api-keys/${encodeURIComponent(key.id)}`);
      toast("Key revoked.");
      render(null);
    } catch (e) {
      showError(null, e);
    }
  };
  await render(null);
  await dialog(`API keys · ${account.name}`, body);
}

// ---------- event types ----------

async function renderEventTypes(root) {
  const name = h("input", { id: "type-name", required: true, placeholder: "survey.finished" });
  const description = h("input", { id: "type-description", placeholder: "A patient finished a survey" });
  const result = h("div", {});
  const form = h("form", { class: "card stack" },
    h("h2", {}, "Register an event type"),
    h("div", { class: "grid3" }, field("Name", name), field("Description", description)),
    h("div", { class: "row" }, h("button", { type: "submit", class: "primary" }, "Register")), result);
  const list = h("div", { id: "type-list" }, "Loading…");
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    try {
      await api.post("/api/v3/event-types", { name: name.value.trim(), description: description.value.trim() });
      name.value = "";
      description.value = "";
      toast("Event type registered.");
      load();
    } catch (e) {
      showError(result, e);
    }
  });
  async function load() {
    try {
      const types = await api.get("/api/v3/event-types");
      fill(list, h("div", { class: "table-wrap" }, h("table", {},
        h("thead", {}, h("tr", {}, h("th", { scope: "col" }, "Name"), h("th", { scope: "col" }, "Description"))),
        h("tbody", {}, types.map((t) => h("tr", {}, h("td", { class: "mono" }, t.name), h("td", {}, t.description)))))));
    } catch (e) {
      showError(list, e);
    }
  }
  fill(root, h("h1", {}, "Event types"), form, list);
  await load();
}

// ---------- publish ----------

async function renderPublish(root) {
  const account = h("select", { id: "publish-account", required: true });
  const type = h("select", { id: "publish-type" });
  const payload = h("textarea", { id: "publish-payload", rows: 8, class: "mono" }, '{\n  "patientId": "p-1"\n}');
  const result = h("div", { id: "publish-result", role: "status" });
  const form = h("form", { class: "card stack" },
    h("p", { class: "muted" }, "Publishes an event to one account, as your platform would (POST /api/v3/events)."),
    h("div", { class: "grid3" }, field("Account", account), field("Event type", type)),
    field("Payload (JSON object)", payload),
    h("div", { class: "row" }, h("button", { type: "submit", class: "primary" }, "Publish"), result));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    let body;
    try {
      body = { accountId: account.value, type: type.value, payload: JSON.parse(payload.value || "{}") };
    } catch (e) {
      return showError(result, new Error(`payload: is not valid JSON (${e.message})`));
    }
    try {
      const answer = await api.post("/api/v3/events", body);
      fill(result, h("span", { class: "ok-text" }, `Published ${answer.id}: ${answer.deliveries} ${answer.deliveries === 1 ? "delivery" : "deliveries"}.`));
    } catch (e) {
      showError(result, e);
    }
  });
  fill(root, h("h1", {}, "Publish a test event"), form);
  try {
    const [accounts, types] = await Promise.all([api.get("/api/v3/accounts?size=100"), api.get("/api/v3/event-types")]);
    if (accounts.total === 0) fill(result, empty("Create an account first."));
    fill(account, accounts.content.map((a) => h("option", { value: a.id }, `${a.name} (${a.id})`)));
    fill(type, types.map((t) => h("option", { value: t.name }, t.name)));
  } catch (e) {
    showError(result, e);
  }
}

start();

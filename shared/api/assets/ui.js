// Small helpers shared by the portal and the console. Everything from the server is put on
// the page as text (text nodes, textContent), never as HTML: a payload or a receiver's answer
// cannot run in the page.

/** Builds an element: h("button", {class: "x", onclick: f}, "text", child, ...). */
export function h(tag, props = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(props || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith("on")) el.addEventListener(key.slice(2), value);
    else if (key === "class") el.className = value;
    else if (key === "value") el.value = value;
    else if (key === "checked") el.checked = !!value;
    else el.setAttribute(key, value === true ? "" : String(value));
  }
  for (const child of children.flat()) {
    if (child === undefined || child === null || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

export function $(selector) {
  return document.querySelector(selector);
}

/** Replaces an element's children. */
export function fill(el, ...children) {
  el.replaceChildren();
  for (const child of children.flat()) {
    if (child === undefined || child === null || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

export class ApiFailure extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

/**
 * A client of the JSON API for one page's session: `kind` is "portal" or "console". Every
 * request carries the session's CSRF token; the cookie alone authenticates nothing.
 */
export function client(kind, onSessionEnded) {
  let csrf = null;
  async function call(method, path, body) {
    const headers = { "X-Hookline-Session": kind };
    if (csrf) headers["X-Hookline-Csrf"] = csrf;
    const init = { method, headers, credentials: "same-origin", cache: "no-store" };
    if (body !== undefined) {
      headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    let response;
    try {
      response = await fetch(path, init);
    } catch (e) {
      throw new ApiFailure(0, "network", "Hookline cannot be reached: check your connection.");
    }
    const text = await response.text();
    let data = null;
    try {
      data = text ? JSON.parse(text) : null;
    } catch (e) {
      data = null;
    }
    if (!response.ok) {
      const error = (data && data.error) || {};
      const failure = new ApiFailure(response.status, error.code || "error",
        error.message || `The request failed (${response.status}).`);
      if (response.status === 401 && path.startsWith("/api/") && onSessionEnded) onSessionEnded(failure);
      throw failure;
    }
    return data;
  }
  return {
    setCsrf(token) { csrf = token; },
    get: (path) => call("GET", path),
    post: (path, body) => call("POST", path, body),
    patch: (path, body) => call("PATCH", path, body),
    del: (path) => call("DELETE", path),
  };
}

/** A time in the viewer's time zone, with UTC on hover. */
export function time(iso) {
  if (!iso) return h("span", { class: "muted" }, "—");
  const date = new Date(iso);
  if (Number.isNaN(date.getTime())) return h("span", {}, iso);
  const local = date.toLocaleString(undefined, {
    year: "numeric", month: "short", day: "numeric",
    hour: "2-digit", minute: "2-digit", second: "2-digit",
  });
  return h("time", { datetime: iso, title: `${date.toISOString().replace(".000Z", "Z")} (UTC)` }, local);
}

const STATUS_CLASS = {
  delivered: "ok", failed: "bad", retrying: "warn", pending: "info",
  active: "ok", inactive: "muted", failing: "warn",
};

export function badge(status) {
  return h("span", { class: `badge ${STATUS_CLASS[status] || "muted"}` }, status);
}

/** A datetime-local input's value as RFC 3339 UTC (the input is in the viewer's zone). */
export function toUtc(localValue) {
  if (!localValue) return undefined;
  const date = new Date(localValue);
  return Number.isNaN(date.getTime()) ? undefined : date.toISOString();
}

let toastTimer = null;
/** A short message at the bottom of the screen, read out by screen readers. */
export function toast(message, kind = "ok") {
  let el = $("#toast");
  if (!el) {
    el = h("div", { id: "toast", role: "status", "aria-live": "polite" });
    document.body.append(el);
  }
  el.className = `toast ${kind}`;
  el.textContent = message;
  el.hidden = false;
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => { el.hidden = true; }, 6000);
}

/** Shows the error of a failed action in place (and as a toast). */
export function showError(target, error) {
  const message = error && error.message ? error.message : String(error);
  if (target) fill(target, h("p", { class: "error", role: "alert" }, message));
  toast(message, "bad");
}

/** A modal dialog with `content`; resolves with the button's value (or null on Escape). */
export function dialog(title, content, buttons = [{ label: "Close", value: null }]) {
  return new Promise((resolve) => {
    const box = h("dialog", { class: "dialog", "aria-label": title });
    const done = (value) => { box.close(); box.remove(); resolve(value); };
    box.append(
      h("div", { class: "dialog-head" },
        h("h2", {}, title),
        h("button", { class: "icon", type: "button", "aria-label": "Close", onclick: () => done(null) }, "×")),
      h("div", { class: "dialog-body" }, content),
      h("div", { class: "dialog-actions" },
        buttons.map((b) => h("button", { type: "button", class: b.class || "", onclick: () => done(b.value) }, b.label))),
    );
    box.addEventListener("cancel", (e) => { e.preventDefault(); done(null); });
    document.body.append(box);
    box.showModal();
    const first = box.querySelector(".dialog-actions button");
    if (first) first.focus();
  });
}

export async function confirmAction(title, text, label = "Delete") {
  const value = await dialog(title, h("p", {}, text), [
    { label: "Cancel", value: false },
    { label, value: true, class: "danger" },
  ]);
  return value === true;
}

/** A secret shown once: in a read-only field with a Copy button. */
export function secretBox(secret, note) {
  const input = h("input", { class: "mono secret-value", readonly: true, value: secret, "aria-label": "Secret" });
  return h("div", { class: "secret" },
    h("div", { class: "row" }, input,
      h("button", { type: "button", onclick: () => copy(secret) }, "Copy")),
    note ? h("p", { class: "muted small" }, note) : null);
}

export async function copy(text) {
  try {
    await navigator.clipboard.writeText(text);
    toast("Copied to the clipboard.");
  } catch (e) {
    toast("Copy failed: select the text and copy it by hand.", "bad");
  }
}

export function pretty(jsonText) {
  if (jsonText === undefined || jsonText === null) return "";
  try {
    return JSON.stringify(JSON.parse(jsonText), null, 2);
  } catch (e) {
    return String(jsonText);
  }
}

/** An empty state: what is missing and what to do about it. */
export function empty(text) {
  return h("div", { class: "empty" }, text);
}

export function field(label, input, hint) {
  const id = input.id || `f-${Math.random().toString(36).slice(2, 9)}`;
  input.id = id;
  return h("div", { class: "field" },
    h("label", { for: id }, label), input,
    hint ? h("p", { class: "hint" }, hint) : null);
}

// Shared by every page: DOM building (text only, never HTML), the API client, the theme.

const THEMES = ["auto", "light", "dark"];
const THEME_KEY = "lookout-theme";

/**
 * Build an element. `props`: class, text, dataset, hidden, on<event> handlers, other
 * attributes. Children are nodes or strings; strings always become text nodes.
 */
export function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "class") node.className = value;
    else if (key === "text") node.textContent = String(value);
    else if (key === "dataset") Object.assign(node.dataset, value);
    else if (key === "hidden") node.hidden = true;
    else if (key.startsWith("on") && typeof value === "function") {
      node.addEventListener(key.slice(2), value);
    } else node.setAttribute(key, value === true ? "" : String(value));
  }
  append(node, children);
  return node;
}

function append(node, children) {
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

export const $ = (id) => document.getElementById(id);

/** A status line's text, marked as an error when ``bad``. */
export function setStatus(node, text, bad = false) {
  node.textContent = text;
  node.classList.toggle("bad", bad);
}

export function clear(node) {
  node.replaceChildren();
  return node;
}

export function csrfToken() {
  const meta = document.querySelector('meta[name="csrf-token"]');
  return meta ? meta.content : "";
}

/** Call the JSON API; `{status, ok, data}`. A lapsed session reloads to the login form. */
export async function api(method, url, { json, form } = {}) {
  const headers = { Accept: "application/json" };
  if (method !== "GET") {
    const token = csrfToken();
    if (token) headers["X-CSRF-Token"] = token;
  }
  let body;
  if (json !== undefined) {
    headers["Content-Type"] = "application/json";
    body = JSON.stringify(json);
  } else if (form !== undefined) {
    body = form;
  }
  let response;
  try {
    response = await fetch(url, { method, headers, body, credentials: "same-origin" });
  } catch (err) {
    return { status: 0, ok: false, data: { error: `network error: ${err.message}` } };
  }
  if (response.status === 401 && csrfToken()) {
    window.location.reload();
  }
  let data = null;
  try {
    data = await response.json();
  } catch (_) {
    data = null;
  }
  return { status: response.status, ok: response.ok, data };
}

export function errorText(result) {
  const reason = result.data && result.data.error;
  return reason ? String(reason) : `HTTP ${result.status}`;
}

/** "2026-11-21 10:00:00" in local time, or the input when it is not a date. */
export function localTime(iso, withDate = true) {
  if (iso === undefined || iso === null || iso === "") return "";
  const date = typeof iso === "number" ? new Date(iso * 1000) : new Date(iso);
  if (Number.isNaN(date.getTime())) return String(iso);
  const pad = (n) => String(n).padStart(2, "0");
  const time = `${pad(date.getHours())}:${pad(date.getMinutes())}:${pad(date.getSeconds())}`;
  if (!withDate) return time;
  return `${date.getFullYear()}-${pad(date.getMonth() + 1)}-${pad(date.getDate())} ${time}`;
}

function applyTheme(button, theme) {
  if (theme === "auto") delete document.documentElement.dataset.theme;
  else document.documentElement.dataset.theme = theme;
  if (button) {
    button.textContent = `Theme: ${theme}`;
    const next = THEMES[(THEMES.indexOf(theme) + 1) % THEMES.length];
    button.title = `Colour theme: ${theme} (switch to ${next})`;
  }
}

export function setupTheme() {
  const button = document.getElementById("theme-toggle");
  let theme = "auto";
  try {
    theme = localStorage.getItem(THEME_KEY) || "auto";
  } catch (_) {
    theme = "auto";
  }
  if (!THEMES.includes(theme)) theme = "auto";
  applyTheme(button, theme);
  if (!button) return;
  button.addEventListener("click", () => {
    theme = THEMES[(THEMES.indexOf(theme) + 1) % THEMES.length];
    try {
      if (theme === "auto") localStorage.removeItem(THEME_KEY);
      else localStorage.setItem(THEME_KEY, theme);
    } catch (_) {
      // not saved: the choice lasts for this page only
    }
    applyTheme(button, theme);
  });
}

/** Copy text; resolves true when it reached the clipboard. */
export async function copyText(text) {
  if (navigator.clipboard && window.isSecureContext) {
    try {
      await navigator.clipboard.writeText(text);
      return true;
    } catch (_) {
      // fall through to the selection trick
    }
  }
  const area = el("textarea", { class: "sr-only", readonly: true, "aria-hidden": "true" });
  area.value = text;
  document.body.append(area);
  area.select();
  let done = false;
  try {
    done = document.execCommand("copy");
  } catch (_) {
    done = false;
  }
  area.remove();
  return done;
}

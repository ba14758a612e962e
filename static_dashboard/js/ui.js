// Small DOM helpers shared by the pages: element building, number and date formats, the loading, empty and
// error states, tables and a keyboard-friendly confirmation dialog. Text is always set as text, never as HTML.

export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (name.startsWith("on") && typeof value === "function") el.addEventListener(name.slice(2), value);
    else if (name === "class") el.className = value;
    else if (name === "dataset") Object.assign(el.dataset, value);
    else if (value === true) el.setAttribute(name, "");
    else el.setAttribute(name, String(value));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

export function clear(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

const integer = new Intl.NumberFormat("en-US");
const dollars = new Intl.NumberFormat("en-US", { style: "currency", currency: "USD" });

export const fmt = {
  int: (v) => (v === null || v === undefined ? "—" : integer.format(Number(v))),
  money: (v) => (v === null || v === undefined ? "—" : dollars.format(Number(v))),
  text: (v) => (v === null || v === undefined || v === "" ? "—" : String(v)),
  bool: (v) => (v === null || v === undefined ? "—" : v ? "yes" : "no"),
  date(v) {
    if (!v) return "—";
    const d = new Date(v);
    return d.toISOString().replace("T", " ").slice(0, 19) + " UTC";
  },
  duration(seconds) {
    if (seconds === null || seconds === undefined) return "—";
    const s = Math.round(Number(seconds));
    if (s < 60) return `${s} s`;
    const m = Math.floor(s / 60);
    if (m < 60) return `${m} min ${s % 60} s`;
    return `${Math.floor(m / 60)} h ${m % 60} min`;
  },
  shortId: (id) => String(id).slice(0, 8),
};

export function loading(what = "Loading") {
  return h("p", { class: "state state-loading", role: "status" }, `${what}…`);
}

export function empty(message) {
  return h("p", { class: "state state-empty", role: "status" }, message);
}

/** An error box; `retry` adds a button that runs it again. */
export function failure(error, retry = null) {
  const box = h("div", { class: "state state-error", role: "alert" },
    h("p", {}, error && error.message ? error.message : String(error)));
  if (retry) box.append(h("button", { type: "button", onclick: retry }, "Try again"));
  return box;
}

export function notice(message, kind = "ok") {
  return h("p", { class: `notice notice-${kind}`, role: kind === "error" ? "alert" : "status" }, message);
}

/**
 * Load into `el`: shows the loading state, then `render(data)`, or the error with a retry.
 * Returns the data, or null on failure.
 */
export async function load(el, fetcher, render, what = "Loading") {
  clear(el, loading(what));
  try {
    const data = await fetcher();
    clear(el);
    render(data);
    return data;
  } catch (error) {
    clear(el, failure(error, () => load(el, fetcher, render, what)));
    return null;
  }
}

/** columns: [{label, value: row => node|text, class?}] */
export function table(columns, rows, { caption = null, rowAttrs = null } = {}) {
  return h("div", { class: "table-wrap", tabindex: "0", role: "region", "aria-label": caption || "table" },
    h("table", {},
      caption ? h("caption", {}, caption) : null,
      h("thead", {}, h("tr", {}, columns.map((c) => h("th", { scope: "col", class: c.class }, c.header || c.label)))),
      h("tbody", {}, rows.map((row) => h("tr", rowAttrs ? rowAttrs(row) : {},
        columns.map((c) => h("td", { class: c.class, "data-label": c.label }, c.value(row))))))));
}

export function statusBadge(status) {
  return h("span", { class: `badge badge-${status}` }, status);
}

export function heading(text) {
  return h("h1", { tabindex: "-1", id: "page-title" }, text);
}

let dialogCount = 0;

/** Ask for confirmation in a modal dialog; resolves true on "confirm", false on cancel or Escape. */
export function confirmDialog(message, confirmLabel = "Confirm") {
  dialogCount += 1;
  const titleId = `confirm-${dialogCount}`;
  return new Promise((resolve) => {
    const dialog = h("dialog", { class: "confirm", "aria-labelledby": titleId },
      h("form", { method: "dialog" },
        h("p", { id: titleId }, message),
        h("div", { class: "actions" },
          h("button", { value: "cancel", type: "submit" }, "Cancel"),
          h("button", { value: "confirm", type: "submit", class: "danger" }, confirmLabel))));
    dialog.addEventListener("close", () => {
      resolve(dialog.returnValue === "confirm");
      dialog.remove();
    });
    document.body.append(dialog);
    dialog.showModal();
  });
}

/** A labelled form control: `field("Carats from", input)`; the input gets an id if it has none. */
let fieldCount = 0;
export function field(label, control, hint = null) {
  fieldCount += 1;
  if (!control.id) control.id = `field-${fieldCount}`;
  const error = h("p", { class: "field-error", id: `${control.id}-error`, hidden: true });
  control.setAttribute("aria-describedby", error.id);
  return h("div", { class: "field" },
    h("label", { for: control.id }, label),
    control,
    hint ? h("small", {}, hint) : null,
    error);
}

/** Show `message` under the control (or clear it with null). */
export function setFieldError(control, message) {
  const error = document.getElementById(`${control.id}-error`);
  if (!error) return;
  error.textContent = message || "";
  error.hidden = !message;
  if (message) control.setAttribute("aria-invalid", "true");
  else control.removeAttribute("aria-invalid");
}

export function select(name, options, value = "") {
  return h("select", { name },
    options.map(([v, label]) => h("option", { value: v, selected: String(v) === String(value) }, label)));
}

export function input(name, attrs = {}) {
  return h("input", { name, type: "text", ...attrs });
}

// The shell: signing in and out, the navigation, and a hash router that gives each page its container and
// runs its clean-up (timers, polling) when the reader leaves it.
import { api, ApiError, onUnauthorized, session } from "./api.js";
import { clear, field, h, input, notice } from "./ui.js";
import * as consolidation from "./pages/consolidation.js";
import * as diamond from "./pages/diamond.js";
import * as diamonds from "./pages/diamonds.js";
import * as docs from "./pages/docs.js";
import * as events from "./pages/events.js";
import * as overview from "./pages/overview.js";
import * as pricing from "./pages/pricing.js";
import * as retry from "./pages/retry.js";
import * as run from "./pages/run.js";
import * as runs from "./pages/runs.js";
import * as suppliers from "./pages/suppliers.js";

const PAGES = [
  { path: "overview", label: "Overview", page: overview },
  { path: "runs", label: "Runs", page: runs },
  { path: "consolidation", label: "Consolidation", page: consolidation },
  { path: "retry", label: "Worker retry", page: retry },
  { path: "diamonds", label: "Diamonds", page: diamonds },
  { path: "suppliers", label: "Suppliers", page: suppliers },
  { path: "pricing", label: "Pricing rules", page: pricing },
  { path: "events", label: "Errors & alerts", page: events },
  { path: "docs", label: "API docs", page: docs },
];
// Detail pages: "#/runs/<id>", "#/diamonds/<id>".
const DETAILS = { runs: run, diamonds: diamond };

const main = document.getElementById("main");
const nav = document.getElementById("nav");
const who = document.getElementById("who");
let leaving = [];

function parseHash() {
  const raw = location.hash.replace(/^#\/?/, "");
  const [pathPart, queryPart = ""] = raw.split("?");
  const parts = pathPart.split("/").filter(Boolean).map(decodeURIComponent);
  return { parts, query: new URLSearchParams(queryPart) };
}

function leave() {
  for (const fn of leaving) {
    try {
      fn();
    } catch (error) {
      console.warn("a page's clean-up failed", error);
    }
  }
  leaving = [];
}

function renderNav(current) {
  clear(nav, h("ul", {}, PAGES.map((p) => h("li", {},
    h("a", { href: `#/${p.path}`, "aria-current": p.path === current ? "page" : null }, p.label)))));
}

function renderWho() {
  const credential = session.credential();
  if (!credential) {
    clear(who);
    return;
  }
  clear(who,
    h("span", { class: "who-name" }, credential.name),
    h("span", { class: `badge badge-scope`, title: "scope of this key" }, credential.scope),
    h("button", { type: "button", id: "sign-out", onclick: () => signOut() }, "Sign out"));
}

function route() {
  leave();
  if (!session.key()) {
    renderSignIn();
    return;
  }
  const { parts, query } = parseHash();
  const [section = "overview", id] = parts;
  const entry = PAGES.find((p) => p.path === section);
  const page = id !== undefined && DETAILS[section] ? DETAILS[section] : entry && entry.page;
  renderNav(entry ? entry.path : "");
  renderWho();
  clear(main);
  if (!page) {
    main.append(h("h1", { tabindex: "-1", id: "page-title" }, "Not found"),
      h("p", {}, "No such page. ", h("a", { href: "#/overview" }, "Go to the overview.")));
  } else {
    page.render({ main, id, query, onLeave: (fn) => leaving.push(fn), navigate });
  }
  const title = document.getElementById("page-title");
  if (title) {
    document.title = `${title.textContent} · Opus`;
    title.focus({ preventScroll: true });
  }
}

export function navigate(hash) {
  if (location.hash === hash) route();
  else location.hash = hash;
}

function signOut(message = null) {
  session.end();
  leave();
  renderSignIn(message);
}

function renderSignIn(message = null) {
  clear(nav);
  clear(who);
  const key = input("api_key", { type: "password", autocomplete: "off", required: true, spellcheck: "false" });
  const status = h("div", { id: "sign-in-status" });
  const form = h("form", { class: "card sign-in", "aria-labelledby": "page-title" },
    h("h1", { tabindex: "-1", id: "page-title" }, "Sign in"),
    h("p", {}, "Paste an Opus API key. It is kept only in this browser tab and sent as the X-API-Key header."),
    field("API key", key),
    h("button", { type: "submit" }, "Sign in"),
    status);
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const value = key.value.trim();
    clear(status, notice("Checking the key…", "info"));
    try {
      const credential = await api("/me", { key: value });
      session.start(value, credential);
      if (!location.hash || location.hash === "#/" || location.hash === "#/sign-in") location.hash = "#/overview";
      else route();
    } catch (error) {
      const text = error instanceof ApiError && error.status === 401
        ? `The key was refused: ${error.message}` : error.message;
      clear(status, notice(text, "error"));
      key.focus();
    }
  });
  clear(main, message ? notice(message, "error") : null, form);
  document.title = "Sign in · Opus";
  key.focus();
}

// The skip link must not change the hash, which is the router's.
document.querySelector(".skip").addEventListener("click", (event) => {
  event.preventDefault();
  main.focus();
});
onUnauthorized((error) => signOut(`Signed out: ${error.message}`));
window.addEventListener("hashchange", route);
route();

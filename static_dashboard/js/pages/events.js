// Errors and alerts, newest first, optionally of one run, paged back by id.
import { api } from "../api.js";
import { clear, empty, field, fmt, h, heading, input, load, statusBadge, table } from "../ui.js";

const PAGE = 50;

export function render({ main, query, navigate }) {
  const runFilter = input("run", { value: query.get("run") || "", class: "mono", size: 36, placeholder: "any run" });
  const form = h("form", { class: "inline", "aria-label": "Filter by run" }, field("Run id", runFilter),
    h("button", { type: "submit" }, "Filter"));
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const run = runFilter.value.trim();
    navigate(run ? `#/events?run=${encodeURIComponent(run)}` : "#/events");
  });
  const alerts = h("section", { class: "card", id: "alerts" });
  const errors = h("section", { class: "card", id: "errors" });
  main.append(heading("Errors and alerts"), form, alerts, errors);
  const runId = runFilter.value.trim() || null;
  feed(alerts, "Alerts", "/analytics/alerts", runId, [
    { label: "When", value: (a) => fmt.date(a.created_at) },
    { label: "Severity", value: (a) => statusBadge(a.severity) },
    { label: "Kind", value: (a) => a.kind },
    { label: "Message", value: (a) => a.message },
    { label: "Run", value: (a) => (a.run_id ? h("a", { href: `#/runs/${a.run_id}` }, fmt.shortId(a.run_id)) : "—") },
  ]);
  feed(errors, "Errors", "/analytics/errors", runId, [
    { label: "When", value: (e) => fmt.date(e.created_at) },
    { label: "Source", value: (e) => e.source },
    { label: "Stone", value: (e) => fmt.text(e.supplier_stone_id) },
    { label: "Field", value: (e) => fmt.text(e.field) },
    { label: "Message", value: (e) => e.message },
    { label: "Run", value: (e) => (e.run_id ? h("a", { href: `#/runs/${e.run_id}` }, fmt.shortId(e.run_id)) : "—") },
  ]);
}

function feed(section, title, path, runId, columns) {
  const rows = [];
  const list = h("div", {});
  clear(section, h("h2", {}, title), list);
  const more = (beforeId) => load(list,
    () => api(path, { query: { run_id: runId, before_id: beforeId, limit: PAGE } }),
    (page) => {
      rows.push(...page);
      if (!rows.length) {
        list.append(empty(runId ? `No ${title.toLowerCase()} for this run.` : `No ${title.toLowerCase()}.`));
        return;
      }
      list.append(table(columns, rows, { caption: `${title}, newest first` }));
      if (page.length === PAGE) {
        list.append(h("button", { type: "button", onclick: () => more(page[page.length - 1].id) }, "Older"));
      }
    }, `Loading ${title.toLowerCase()}`);
  more(null);
}

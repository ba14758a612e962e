// Overview: latest runs, inventory by feed and natural/lab-grown, the watermarks, the last 24 hours' failed
// runs and alerts (each linked), and charts of the last 30 runs, one line per feed.
import { api } from "../api.js";
import { lineChart } from "../charts.js";
import { empty, fmt, h, heading, load, statusBadge, table } from "../ui.js";

const CHART_RUNS = 30;

export function render({ main }) {
  const body = h("div", { class: "stack" });
  main.append(heading("Overview"), body);
  load(body, () => Promise.all([
    api("/analytics/summary"),
    api("/operations/overview"),
    api("/operations/runs", { query: { limit: CHART_RUNS } }),
  ]), ([summary, overview, history]) => draw(body, summary, overview, history.items), "Loading the overview");
}

function card(title, ...content) {
  return h("section", { class: "card", "aria-label": title }, h("h2", {}, title), ...content);
}

function figure(label, value, id) {
  return h("div", { class: "figure", id }, h("span", { class: "figure-value" }, value),
    h("span", { class: "figure-label" }, label));
}

function draw(body, summary, overview, runs) {
  const active = summary.by_status.active || 0;
  const natural = summary.by_lab_grown.false || 0;
  const lab = summary.by_lab_grown.true || 0;
  const trouble = overview.last_24h;
  body.append(h("div", { class: "grid" },
    card("Inventory",
      h("div", { class: "figures" },
        figure("active stones", fmt.int(active), "active-stones"),
        figure("natural", fmt.int(natural)), figure("lab-grown", fmt.int(lab))),
      overview.inventory.length
        ? table([
          { label: "Feed", value: (r) => r.feed },
          { label: "Kind", value: (r) => (r.lab_grown ? "lab-grown" : "natural") },
          { label: "Stones", value: (r) => fmt.int(r.stones), class: "num" },
        ], overview.inventory, { caption: "Active stones by feed" })
        : empty("No stones yet: run the pipeline once.")),
    card("Watermark",
      overview.watermarks.length
        ? h("dl", { class: "facts" }, overview.watermarks.map((w) => [
          h("dt", {}, w.feed), h("dd", { class: "watermark" }, fmt.date(w.value))]))
        : empty("No watermark yet: no run has completed.")),
    card("Last 24 hours",
      h("div", { class: "figures" },
        figure("failed runs", fmt.int(trouble.failed_runs), "failed-runs"),
        figure("alerts", fmt.int(trouble.alerts), "alerts-24h"),
        figure("errors", fmt.int(trouble.errors), "errors-24h")),
      recentList("Failed runs", "recent-failed-runs", trouble.failed_run_items, trouble.failed_runs, (r) => [
        h("a", { href: `#/runs/${r.run_id}` }, `${r.feed} ${r.run_type} run ${fmt.shortId(r.run_id)}`),
        ` started ${fmt.date(r.started_at)}`, r.failure_reason ? `: ${r.failure_reason}` : ""]),
      recentList("Alerts", "recent-alerts", trouble.alert_items, trouble.alerts, (a) => [
        h("a", { href: a.run_id ? `#/events?run=${a.run_id}` : "#/events" }, `${a.severity}: ${a.message}`),
        ` ${fmt.date(a.created_at)}`]),
      h("p", {}, h("a", { href: "#/events" }, "See all errors and alerts")))));

  const latest = card("Latest runs");
  if (runs.length) {
    latest.append(table([
      { label: "Started", value: (r) => h("a", { href: `#/runs/${r.run_id}` }, fmt.date(r.started_at)) },
      { label: "Feed", value: (r) => r.feed },
      { label: "Type", value: (r) => r.run_type },
      { label: "Status", value: (r) => statusBadge(r.status) },
      { label: "Duration", value: (r) => fmt.duration(r.duration_s), class: "num" },
      { label: "Stones", value: (r) => fmt.int(r.consolidated), class: "num" },
    ], runs.slice(0, 5), { caption: "The five latest runs" }));
  } else {
    latest.append(empty("No runs yet."));
  }
  body.append(latest);

  const charts = card(`The last ${CHART_RUNS} runs`);
  body.append(charts);
  if (!runs.length) {
    charts.append(empty("Charts appear after the first run."));
    return;
  }
  const oldestFirst = [...runs].reverse();
  const labels = oldestFirst.map((r) => fmt.date(r.started_at).slice(5, 16));
  // One line per feed over the shared run axis: each feed's runs differ in size, so one line would zigzag.
  const feeds = [...new Set(oldestFirst.map((r) => r.feed))].sort();
  const perFeed = (value) => feeds.map((feed) => ({
    label: feed, values: oldestFirst.map((r) => (r.feed === feed ? value(r) : null)) }));
  const grid = h("div", { class: "grid charts" });
  charts.append(grid);
  const left = h("div", { id: "chart-duration" });
  const right = h("div", { id: "chart-stones" });
  grid.append(left, right);
  lineChart(left, { title: "Run duration (seconds), per feed", labels, series: perFeed((r) => r.duration_s), unit: "s" });
  lineChart(right, { title: "Stones consolidated per run, per feed", labels,
    series: perFeed((r) => r.consolidated), unit: "stones" });
}

/** The window's items, newest first, each a link; says when more happened than are listed. */
function recentList(title, id, items, total, line) {
  if (!items.length) return h("p", { id }, `${title}: none.`);
  const more = total > items.length ? h("p", {}, `… and ${fmt.int(total - items.length)} more.`) : null;
  return h("div", { id }, h("h3", {}, title), h("ul", { class: "recent" }, items.map((item) => h("li", {}, line(item)))), more);
}

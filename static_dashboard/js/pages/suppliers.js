// Suppliers: active stones and price figures per supplier, with a chart of the largest.
import { api } from "../api.js";
import { barChart } from "../charts.js";
import { empty, fmt, h, heading, load, table } from "../ui.js";

const CHARTED = 12;

export function render({ main }) {
  const body = h("div", { class: "stack" });
  main.append(heading("Suppliers"), body);
  load(body, () => api("/analytics/suppliers", { query: { limit: 200 } }), (rows) => {
    if (!rows.length) {
      body.append(empty("No active stones, so no suppliers yet."));
      return;
    }
    const chart = h("section", { class: "card", id: "supplier-chart" });
    body.append(chart);
    const top = rows.slice(0, CHARTED);
    barChart(chart, {
      title: `Value of active stones, the ${top.length} largest suppliers (dollars)`,
      categories: top.map((r) => r.supplier_name || "(none)"), values: top.map((r) => Number(r.total_value)), unit: "$",
    });
    body.append(table([
      { label: "Supplier", value: (r) => r.supplier_name || "(none)" },
      { label: "Stones", value: (r) => fmt.int(r.stones), class: "num" },
      { label: "Average price", value: (r) => fmt.money(r.avg_price), class: "num" },
      { label: "Total value", value: (r) => fmt.money(r.total_value), class: "num" },
      { label: "Feed value", value: (r) => fmt.money(r.total_feed_value), class: "num" },
      { label: "Margin", value: (r) => margin(r), class: "num" },
    ], rows, { caption: "Suppliers by value of active stones" }));
  }, "Loading suppliers");
}

function margin(row) {
  const feed = Number(row.total_feed_value);
  if (!feed) return "—";
  return `${((Number(row.total_value) / feed - 1) * 100).toFixed(1)} %`;
}

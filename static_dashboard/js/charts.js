// Charts drawn with uPlot (vendored into vendor/ by `make install`). Each chart follows its container's width,
// so it fits a phone as well as a laptop, and carries a text summary for screen readers.
import { h } from "./ui.js";

const HEIGHT = 220;
const resizers = new Set();
window.addEventListener("resize", () => resizers.forEach((fn) => fn()));

function widthOf(el) {
  return Math.max(240, Math.floor(el.getBoundingClientRect().width || 600));
}

function mount(container, summary, build) {
  const figure = h("figure", { class: "chart" }, h("figcaption", {}, summary));
  const plotArea = h("div", { class: "chart-plot", role: "img", "aria-label": summary });
  figure.append(plotArea);
  container.append(figure);
  if (!window.uPlot) {
    plotArea.append(h("p", { class: "state" }, "Charts need the uPlot library (run `make install`)."));
    return null;
  }
  const plot = build(plotArea, widthOf(plotArea));
  const resize = () => {
    if (!plotArea.isConnected) {
      resizers.delete(resize);
      plot.destroy();
      return;
    }
    plot.setSize({ width: widthOf(plotArea), height: HEIGHT });
  };
  resizers.add(resize);
  return plot;
}

// Distinct on a light background and for the common colour-vision deficiencies (Okabe-Ito).
const COLOURS = ["#0072b2", "#d55e00", "#009e73", "#cc79a7", "#e69f00", "#56b4e9"];

/**
 * Lines over labelled points: `labels` name the x positions (e.g. run start times), each of `series`
 * ({label, values}) gives a y per position, null where it has none; a line joins its own points across them.
 */
export function lineChart(container, { title, labels, series, unit }) {
  const xs = labels.map((_, i) => i + 1);
  return mount(container, title, (el, width) => new window.uPlot({
    width, height: HEIGHT,
    // Half a step of room at each end, so that the first and last labels are not cut at the edges.
    scales: { x: { time: false, range: [0.5, labels.length + 0.5] } },
    axes: [
      { values: (_, ticks) => ticks.map((t) => labels[t - 1] || "") },
      { label: unit, size: 60 },
    ],
    series: [
      { label: "run", value: (_, v) => (v === null ? "" : labels[v - 1] || "") },
      ...series.map((s, i) => ({
        label: s.label, stroke: COLOURS[i % COLOURS.length], width: 2, spanGaps: true, points: { show: true, size: 6 },
      })),
    ],
  }, [xs, ...series.map((s) => s.values)], el));
}

/** Vertical bars, one per category. */
export function barChart(container, { title, categories, values, unit }) {
  const xs = categories.map((_, i) => i + 1);
  return mount(container, title, (el, width) => new window.uPlot({
    width, height: HEIGHT,
    // From zero: a bar's height is its value, so an axis starting higher would exaggerate the differences.
    scales: { x: { time: false, range: [0.5, categories.length + 0.5] }, y: { range: (_, __, max) => [0, max > 0 ? max * 1.05 : 1] } },
    axes: [
      { values: (_, ticks) => ticks.map((t) => (Number.isInteger(t) ? categories[t - 1] || "" : "")) },
      { label: unit, size: 60 },
    ],
    series: [
      { label: "supplier", value: (_, v) => (v === null ? "" : categories[v - 1] || "") },
      {
        label: unit, fill: "rgba(37, 99, 235, 0.6)", stroke: "#2563eb",
        paths: window.uPlot.paths.bars({ size: [0.6, 60] }), points: { show: false },
      },
    ],
  }, [xs, values], el));
}

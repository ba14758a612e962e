// One run with per-partition progress, refreshed while the run is active. Only the one-line summary above the
// body is a live region, announced when it changes; the body redrawn every second is not, and keeps the focus.
import { allows, api } from "../api.js";
import { clear, empty, failure, fmt, h, heading, statusBadge, table } from "../ui.js";

const ACTIVE = new Set(["planning", "running", "consolidating"]);
const REFRESH_MS = 1000;

export function render({ main, id, onLeave }) {
  const body = h("div", { class: "stack" });
  const summary = h("p", { id: "run-summary", role: "status" });
  const live = h("p", { class: "refreshing", id: "run-refreshing" });
  main.append(heading(`Run ${fmt.shortId(id)}`), summary, live, body);
  let timer = null;
  let gone = false;
  onLeave(() => {
    gone = true;
    clearTimeout(timer);
  });

  async function refresh(first) {
    if (first) body.append(h("p", { class: "state state-loading", role: "status" }, "Loading the run…"));
    try {
      const run = await api(`/analytics/runs/${encodeURIComponent(id)}`);
      if (gone) return;
      keepingFocus(body, () => draw(run));
      const active = ACTIVE.has(run.status);
      const done = run.partitions.filter((p) => p.status === "succeeded").length;
      say(summary, `Status ${run.status}: ${done} of ${run.partitions_total} partitions done.`);
      live.textContent = active ? "The run is active: refreshing every second." : "";
      if (active) timer = setTimeout(() => refresh(false), REFRESH_MS);
    } catch (error) {
      if (gone) return;
      clear(body, failure(error, () => refresh(true)));
      live.textContent = "";
      say(summary, "");
    }
  }

  function draw(run) {
    const done = run.partitions.filter((p) => p.status === "succeeded").length;
    clear(body,
      h("dl", { class: "facts card" },
        h("dt", {}, "Status"), h("dd", { id: "run-status" }, statusBadge(run.status)),
        h("dt", {}, "Type"), h("dd", {}, `${run.run_type} (${run.trigger})`),
        h("dt", {}, "Feed"), h("dd", {}, run.feed),
        h("dt", {}, "Run id"), h("dd", { class: "mono" }, run.run_id),
        h("dt", {}, "Started"), h("dd", {}, fmt.date(run.started_at)),
        h("dt", {}, "Finished"), h("dd", {}, fmt.date(run.finished_at)),
        h("dt", {}, "Partitions done"), h("dd", { id: "run-partitions-done" }, `${done} of ${run.partitions_total}`),
        h("dt", {}, "Stones consolidated"), h("dd", { id: "run-consolidated" }, fmt.int(run.consolidated)),
        h("dt", {}, "Errors"), h("dd", {}, fmt.int(run.errors)),
        h("dt", {}, "Watermark"), h("dd", {}, fmt.date(run.watermark)),
        run.failure_reason ? [h("dt", {}, "Failure"), h("dd", { class: "error-text" }, run.failure_reason)] : null),
      h("p", { class: "links" },
        h("a", { href: `#/events?run=${run.run_id}` }, "Errors and alerts of this run"),
        run.status === "failed" && allows("admin")
          ? [" · ", h("a", { href: `#/retry?run=${run.run_id}` }, "Retry its failed partitions")] : null),
      run.partitions.length
        ? table([
          { label: "Partition", value: (p) => p.partition, class: "num" },
          { label: "Price per carat", value: (p) => `${fmt.int(p.ppc_from)}–${fmt.int(p.ppc_to)}` },
          { label: "Estimated", value: (p) => fmt.int(p.estimated), class: "num" },
          { label: "Pages", value: (p) => fmt.int(p.pages), class: "num" },
          { label: "Rows fetched", value: (p) => fmt.int(p.rows_fetched), class: "num" },
          { label: "Rows written", value: (p) => fmt.int(p.rows_written), class: "num" },
          { label: "Attempts", value: (p) => fmt.int(p.attempts), class: "num" },
          { label: "Status", value: (p) => statusBadge(p.status) },
          { label: "Error", value: (p) => fmt.text(p.error || p.last_error), class: "error-text" },
          { label: "Last progress", value: (p) => fmt.date(p.updated_at) },
        ], run.partitions, { caption: "Partitions" })
        : empty("No partitions yet: the run is being planned."));
  }

  refresh(true);
}

/** Set a live region's text only when it changes, so that a screen reader hears each change once. */
function say(region, text) {
  if (region.textContent !== text) region.textContent = text;
}

const FOCUSABLE = "a[href], button, [tabindex]";

/** Redraw `el` with `redraw()`, giving the focus back to the control at the same place if it was inside. */
function keepingFocus(el, redraw) {
  const before = [...el.querySelectorAll(FOCUSABLE)].indexOf(document.activeElement);
  redraw();
  if (before < 0) return;
  const same = el.querySelectorAll(FOCUSABLE)[before];
  if (same) same.focus({ preventScroll: true });
}

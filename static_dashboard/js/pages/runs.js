// Runs: the history with totals, starting a run, and deleting a failed one.
import { allows, api } from "../api.js";
import { clear, confirmDialog, empty, field, fmt, h, heading, load, notice, select, statusBadge, table } from "../ui.js";

const PAGE_SIZE = 20;
const STATUSES = [["", "any"], ["running", "running"], ["consolidating", "consolidating"],
  ["completed", "completed"], ["failed", "failed"], ["planning", "planning"]];

export function render({ main, query, navigate }) {
  const state = { offset: Number(query.get("offset") || 0), status: query.get("status") || "" };
  const messages = h("div", { id: "runs-messages" });
  const list = h("div", {});
  main.append(heading("Runs"), messages);
  if (allows("admin")) main.append(startForm(messages, navigate));
  const statusFilter = select("status", STATUSES, state.status);
  const filter = h("form", { class: "inline", "aria-label": "Filter runs" }, field("Status", statusFilter),
    h("button", { type: "submit" }, "Filter"));
  filter.addEventListener("submit", (event) => {
    event.preventDefault();
    state.status = statusFilter.value;
    state.offset = 0;
    refresh();
  });
  main.append(filter, list);

  function refresh() {
    load(list, () => api("/operations/runs", { query: { limit: PAGE_SIZE, offset: state.offset, status: state.status } }),
      (page) => draw(page), "Loading runs");
  }

  function draw(page) {
    if (!page.items.length) {
      list.append(empty(state.offset ? "No more runs." : "No runs yet. Start one above."));
    } else {
      list.append(table([
        { label: "Started", value: (r) => h("a", { href: `#/runs/${r.run_id}` }, fmt.date(r.started_at)) },
        { label: "Type", value: (r) => r.run_type },
        { label: "Trigger", value: (r) => r.trigger },
        { label: "Status", value: (r) => statusBadge(r.status) },
        { label: "Duration", value: (r) => fmt.duration(r.duration_s), class: "num" },
        { label: "Partitions", value: (r) => `${fmt.int(r.partitions_total)}${r.partitions_failed ? ` (${r.partitions_failed} failed)` : ""}`, class: "num" },
        { label: "Pages", value: (r) => fmt.int(r.pages), class: "num" },
        { label: "Rows", value: (r) => fmt.int(r.rows_fetched), class: "num" },
        { label: "Stones", value: (r) => fmt.int(r.consolidated), class: "num" },
        { label: "Errors", value: (r) => fmt.int(r.errors), class: "num" },
        { label: "Actions", value: (r) => actions(r) },
      ], page.items, { caption: "Runs, newest first", rowAttrs: (r) => ({ "data-run": r.run_id }) }));
    }
    const pager = h("div", { class: "pager" });
    if (state.offset > 0) {
      pager.append(h("button", { type: "button", onclick: () => { state.offset = Math.max(0, state.offset - PAGE_SIZE); refresh(); } }, "Newer"));
    }
    if (page.next_offset !== null) {
      pager.append(h("button", { type: "button", onclick: () => { state.offset = page.next_offset; refresh(); } }, "Older"));
    }
    list.append(pager);
  }

  function actions(run) {
    if (run.status !== "failed" || !allows("admin")) return "";
    return h("button", {
      type: "button", class: "danger small", "aria-label": `Delete failed run ${fmt.shortId(run.run_id)}`,
      onclick: async () => {
        const sure = await confirmDialog(`Delete failed run ${run.run_id} and its unconsolidated raw rows?`, "Delete run");
        if (!sure) return;
        try {
          await api("/triggers/delete-run", { method: "POST", body: { run_id: run.run_id } });
          clear(messages, notice(`Run ${fmt.shortId(run.run_id)} deleted.`));
          refresh();
        } catch (error) {
          clear(messages, notice(error.message, "error"));
        }
      },
    }, "Delete");
  }

  refresh();
}

function startForm(messages, navigate) {
  const type = select("type", [["incremental", "incremental"], ["full", "full"]]);
  const button = h("button", { type: "submit" }, "Start run");
  const form = h("form", { class: "card inline", "aria-label": "Start a run" },
    h("h2", {}, "Start a run"), field("Run type", type), button);
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    button.disabled = true;
    try {
      const started = await api("/triggers/run", { method: "POST", body: { type: type.value } });
      navigate(`#/runs/${started.run_id}`);
    } catch (error) {
      clear(messages, notice(error.message, "error"));
    } finally {
      button.disabled = false;
    }
  });
  return form;
}

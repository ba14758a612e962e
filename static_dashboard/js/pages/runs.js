// Runs: the history with totals (filtered by state and feed), starting a run of a chosen feed, and deleting a
// failed one.
import { allows, api } from "../api.js";
import { clear, confirmDialog, empty, field, fmt, h, heading, load, notice, select, statusBadge, table } from "../ui.js";

const PAGE_SIZE = 20;
const STATUSES = [["", "any"], ["running", "running"], ["consolidating", "consolidating"],
  ["completed", "completed"], ["failed", "failed"], ["planning", "planning"]];

export function render({ main, query, navigate }) {
  const state = { offset: Number(query.get("offset") || 0), status: query.get("status") || "", feed: query.get("feed") || "" };
  const messages = h("div", { id: "runs-messages" });
  const list = h("div", {});
  main.append(heading("Runs"), messages);
  const start = allows("admin") ? startForm(messages, navigate) : null;
  if (start) main.append(start.form);
  const statusFilter = select("status", STATUSES, state.status);
  const feedFilter = select("feed", [["", "any"]], state.feed);
  const filter = h("form", { class: "inline", "aria-label": "Filter runs" }, field("Status", statusFilter),
    field("Feed", feedFilter), h("button", { type: "submit" }, "Filter"));
  filter.addEventListener("submit", (event) => {
    event.preventDefault();
    state.status = statusFilter.value;
    state.feed = feedFilter.value;
    state.offset = 0;
    refresh();
  });
  main.append(filter, list);
  // The configured feeds fill both selects; a failure leaves the filter at "any" and says so in the form.
  api("/operations/feeds").then((feeds) => {
    feedFilter.append(...feeds.map((f) => h("option", { value: f.name, selected: f.name === state.feed }, f.name)));
    if (start) start.setFeeds(feeds.filter((f) => f.enabled));
  }, (error) => {
    if (start) start.setFeeds([], error);
  });

  function refresh() {
    load(list, () => api("/operations/runs", {
      query: { limit: PAGE_SIZE, offset: state.offset, status: state.status, feed: state.feed } }),
      (page) => draw(page), "Loading runs");
  }

  function draw(page) {
    if (!page.items.length) {
      list.append(empty(state.offset ? "No more runs." : "No runs yet. Start one above."));
    } else {
      list.append(table([
        { label: "Started", value: (r) => h("a", { href: `#/runs/${r.run_id}` }, fmt.date(r.started_at)) },
        { label: "Feed", value: (r) => r.feed },
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

/** The start form; its Feed select waits for `setFeeds(enabledFeeds)`, the button disabled until then. */
function startForm(messages, navigate) {
  const type = select("type", [["incremental", "incremental"], ["full", "full"]]);
  const feed = h("select", { name: "feed", disabled: true }, h("option", { value: "" }, "loading feeds…"));
  const button = h("button", { type: "submit", disabled: true }, "Start run");
  const form = h("form", { class: "card inline", "aria-label": "Start a run" },
    h("h2", {}, "Start a run"), field("Feed", feed), field("Run type", type), button);
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    button.disabled = true;
    try {
      const started = await api("/triggers/run", { method: "POST", body: { type: type.value, feed: feed.value } });
      navigate(`#/runs/${started.run_id}`);
    } catch (error) {
      clear(messages, notice(error.message, "error"));
    } finally {
      button.disabled = false;
    }
  });
  function setFeeds(enabled, error = null) {
    if (error || !enabled.length) {
      clear(feed, h("option", { value: "" }, "no feed"));
      clear(messages, notice(error ? `The feeds could not be read: ${error.message}` : "No feed is enabled.", "error"));
      return;
    }
    clear(feed, enabled.map((f) => h("option", { value: f.name }, f.name)));
    feed.disabled = false;
    button.disabled = false;
  }
  return { form, setFeeds };
}

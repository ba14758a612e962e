// Consolidation: raw rows waiting, the latest run consolidated and each feed's latest, and (admin)
// consolidating a run again.
import { allows, api } from "../api.js";
import { clear, empty, field, fmt, h, heading, input, load, notice, statusBadge, table } from "../ui.js";

export function render({ main }) {
  const messages = h("div", {});
  const body = h("div", { class: "stack" });
  main.append(heading("Consolidation"), messages, body);
  const refresh = () => load(body, () => api("/operations/consolidation"), draw, "Loading consolidation");

  function draw(state) {
    const latest = state.latest;
    body.append(h("section", { class: "card" }, h("h2", {}, "Now"),
      h("div", { class: "figures" },
        h("div", { class: "figure", id: "pending-rows" }, h("span", { class: "figure-value" }, fmt.int(state.pending_rows)),
          h("span", { class: "figure-label" }, "raw rows pending")),
        h("div", { class: "figure" }, h("span", { class: "figure-value" }, fmt.int(state.claimed_rows)),
          h("span", { class: "figure-label" }, "being consolidated")))));
    const section = h("section", { class: "card" }, h("h2", {}, "Latest consolidation"));
    body.append(section);
    if (!latest) {
      section.append(empty("No run has been consolidated yet."));
    } else {
      section.append(h("dl", { class: "facts" },
        h("dt", {}, "Run"), h("dd", {}, h("a", { href: `#/runs/${latest.run_id}` }, latest.run_id)),
        h("dt", {}, "Feed"), h("dd", { id: "latest-feed" }, latest.feed),
        h("dt", {}, "Status"), h("dd", {}, statusBadge(latest.status)),
        h("dt", {}, "Queued"), h("dd", {}, fmt.date(latest.consolidation_enqueued_at)),
        h("dt", {}, "Consolidated"), h("dd", { id: "latest-consolidated" }, fmt.int(latest.consolidated)),
        h("dt", {}, "Errors"), h("dd", {}, fmt.int(latest.errors)),
        h("dt", {}, "Soft-deleted"), h("dd", {}, fmt.int(latest.deleted))));
    }
    if (state.by_feed.length > 1) {
      body.append(h("section", { class: "card" }, h("h2", {}, "Latest consolidation per feed"), table([
        { label: "Feed", value: (r) => r.feed },
        { label: "Run", value: (r) => h("a", { href: `#/runs/${r.run_id}` }, fmt.shortId(r.run_id)) },
        { label: "Type", value: (r) => r.run_type },
        { label: "Status", value: (r) => statusBadge(r.status) },
        { label: "Queued", value: (r) => fmt.date(r.consolidation_enqueued_at) },
        { label: "Consolidated", value: (r) => fmt.int(r.consolidated), class: "num" },
        { label: "Errors", value: (r) => fmt.int(r.errors), class: "num" },
        { label: "Soft-deleted", value: (r) => fmt.int(r.deleted), class: "num" },
      ], state.by_feed, { caption: "Each feed's latest consolidation", rowAttrs: (r) => ({ "data-feed": r.feed }) })));
    }
    if (allows("admin")) body.append(triggerForm(latest));
  }

  function triggerForm(latest) {
    const runId = input("run_id", { value: latest ? latest.run_id : "", required: true, class: "mono", size: 36 });
    const force = h("input", { type: "checkbox", name: "force" });
    const form = h("form", { class: "card", "aria-label": "Consolidate a run" },
      h("h2", {}, "Consolidate a run"),
      field("Run id", runId),
      h("div", { class: "check" }, force, h("label", { for: "force" }, "Force (even if some partitions did not succeed, or the run is completed)")),
      h("button", { type: "submit" }, "Consolidate"));
    force.id = "force";
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      try {
        await api("/triggers/consolidate", { method: "POST", body: { run_id: runId.value.trim(), force: force.checked } });
        clear(messages, notice(`Consolidation of run ${fmt.shortId(runId.value.trim())} queued.`));
        refresh();
      } catch (error) {
        clear(messages, notice(error.message, "error"));
      }
    });
    return form;
  }

  refresh();
}

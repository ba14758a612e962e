// Worker retry: failed runs, their failed partitions with errors, and re-queueing them.
import { allows, api } from "../api.js";
import { clear, empty, fmt, h, heading, load, notice, statusBadge, table } from "../ui.js";

export function render({ main, query, navigate }) {
  const messages = h("div", {});
  const body = h("div", { class: "stack" });
  main.append(heading("Worker retry"), messages, body);
  const wanted = query.get("run");

  load(body, async () => {
    const failed = await api("/operations/runs", { query: { status: "failed", limit: 10 } });
    const ids = failed.items.map((r) => r.run_id);
    if (wanted && !ids.includes(wanted)) ids.unshift(wanted);
    return Promise.all(ids.map((id) => api(`/analytics/runs/${encodeURIComponent(id)}`)));
  }, (runs) => {
    if (!runs.length) {
      body.append(empty("No failed runs: nothing to retry."));
      return;
    }
    runs.forEach((run) => body.append(runCard(run)));
  }, "Loading failed runs");

  function runCard(run) {
    const failedParts = run.partitions.filter((p) => p.status !== "succeeded");
    const section = h("section", { class: "card", dataset: { run: run.run_id }, "aria-label": `Run ${run.run_id}` },
      h("h2", {}, h("a", { href: `#/runs/${run.run_id}` }, `Run ${fmt.shortId(run.run_id)}`), " ", statusBadge(run.status)),
      h("p", {}, `${run.run_type}, started ${fmt.date(run.started_at)}. `, fmt.text(run.failure_reason)));
    if (failedParts.length) {
      section.append(table([
        { label: "Partition", value: (p) => p.partition, class: "num" },
        { label: "Status", value: (p) => statusBadge(p.status) },
        { label: "Next offset", value: (p) => fmt.int(p.next_offset), class: "num" },
        { label: "Pages", value: (p) => fmt.int(p.pages), class: "num" },
        { label: "Error", value: (p) => fmt.text(p.error), class: "error-text" },
      ], failedParts, { caption: "Partitions that did not succeed" }));
    } else {
      section.append(empty("Every partition succeeded; the run failed later (see its alerts)."));
    }
    if (run.status === "failed" && allows("admin")) {
      const button = h("button", { type: "button" }, "Retry failed partitions");
      button.addEventListener("click", async () => {
        button.disabled = true;
        try {
          const accepted = await api("/triggers/retry-partitions", { method: "POST", body: { run_id: run.run_id } });
          clear(messages, notice(`${accepted.partitions} partition(s) of run ${fmt.shortId(run.run_id)} re-queued.`));
          navigate(`#/runs/${run.run_id}`);
        } catch (error) {
          clear(messages, notice(error.message, "error"));
          button.disabled = false;
        }
      });
      section.append(button);
    }
    return section;
  }
}

// Pricing rules in priority order; create, edit and delete (admin), with the API's validation messages shown
// at the field they concern, and how many stones each change repriced.
import { allows, api } from "../api.js";
import { clear, confirmDialog, empty, field, fmt, h, heading, input, load, notice, select, setFieldError, table } from "../ui.js";

const NUMBERS = ["priority", "carat_min", "carat_max", "feed_price_min", "feed_price_max", "markup_ratio", "rating"];
const FIELDS = ["name", "feed", "shapes", "lab_grown", "active", ...NUMBERS];

export function render({ main }) {
  const messages = h("div", { id: "pricing-messages" });
  const list = h("div", {});
  main.append(heading("Pricing rules"),
    h("p", {}, "Rules are tried by ascending priority; the first that matches a stone prices it (price = feed price × markup)."),
    messages);
  const admin = allows("admin");
  const editor = admin ? ruleForm() : null;
  if (editor) main.append(editor.form);
  main.append(list);
  const refresh = () => load(list, () => api("/pricing-rules"), draw, "Loading pricing rules");

  function draw(rules) {
    if (!rules.length) {
      list.append(empty("No rules: no stone has a price."));
      return;
    }
    list.append(table([
      { label: "Priority", value: (r) => r.priority, class: "num" },
      { label: "Name", value: (r) => fmt.text(r.name) },
      { label: "Feed", value: (r) => fmt.text(r.feed) },
      { label: "Shapes", value: (r) => (r.shapes ? r.shapes.join(", ") : "any") },
      { label: "Carats", value: (r) => range(r.carat_min, r.carat_max) },
      { label: "Kind", value: (r) => (r.lab_grown === null ? "any" : r.lab_grown ? "lab-grown" : "natural") },
      { label: "Feed price", value: (r) => range(r.feed_price_min, r.feed_price_max) },
      { label: "Markup", value: (r) => r.markup_ratio, class: "num" },
      { label: "Active", value: (r) => fmt.bool(r.active) },
      { label: "Actions", value: (r) => (admin ? h("span", { class: "row-actions" },
        h("button", { type: "button", class: "small", "aria-label": `Edit rule ${r.priority}`, onclick: () => editor.edit(r) }, "Edit"),
        h("button", { type: "button", class: "small danger", "aria-label": `Delete rule ${r.priority}`, onclick: () => remove(r) }, "Delete"))
        : "") },
    ], rules, { caption: "Rules in the order they are tried", rowAttrs: (r) => ({ "data-priority": r.priority }) }));
  }

  async function remove(rule) {
    const sure = await confirmDialog(`Delete pricing rule ${rule.priority}${rule.name ? ` (${rule.name})` : ""}? Stones it priced are repriced at once.`, "Delete rule");
    if (!sure) return;
    try {
      const result = await api(`/pricing-rules/${rule.id}`, { method: "DELETE" });
      clear(messages, notice(`Rule deleted; ${fmt.int(result.repriced)} stones repriced.`));
      refresh();
    } catch (error) {
      clear(messages, notice(error.message, "error"));
    }
  }

  function ruleForm() {
    const c = {
      name: input("name", { maxlength: 200 }),
      feed: input("feed", { placeholder: "any feed" }),
      shapes: input("shapes", { placeholder: "any shape, or ROUND, OVAL" }),
      lab_grown: select("lab_grown", [["", "any"], ["false", "natural"], ["true", "lab-grown"]]),
      active: h("input", { type: "checkbox", name: "active", id: "rule-active", checked: true }),
    };
    for (const name of NUMBERS) c[name] = input(name, { type: "text", inputmode: "decimal" });
    c.priority.required = true;
    c.markup_ratio.required = true;
    let editing = null;
    const title = h("h2", {}, "New rule");
    const submit = h("button", { type: "submit" }, "Create rule");
    const cancel = h("button", { type: "button", class: "secondary", hidden: true, onclick: () => reset() }, "Cancel edit");
    const form = h("form", { class: "card rule-form", id: "rule-form", "aria-label": "Pricing rule", novalidate: true },
      title,
      h("div", { class: "grid fields" },
        field("Priority", c.priority, "lower is tried first"), field("Markup ratio", c.markup_ratio, "e.g. 1.25"),
        field("Name", c.name), field("Feed", c.feed), field("Shapes", c.shapes, "comma list"),
        field("Natural or lab-grown", c.lab_grown),
        field("Carats from", c.carat_min, "inclusive"), field("Carats below", c.carat_max, "exclusive"),
        field("Feed price from ($)", c.feed_price_min, "inclusive"), field("Feed price below ($)", c.feed_price_max, "exclusive"),
        field("Rating", c.rating)),
      h("div", { class: "check" }, c.active, h("label", { for: "rule-active" }, "Active")),
      h("p", { class: "field-error", id: "rule-form-error", hidden: true, role: "alert" }),
      h("div", { class: "actions" }, submit, cancel));

    function reset() {
      editing = null;
      form.reset();
      c.active.checked = true;
      title.textContent = "New rule";
      submit.textContent = "Create rule";
      cancel.hidden = true;
      clearErrors();
    }

    function edit(rule) {
      editing = rule;
      clearErrors();
      for (const name of ["name", "feed", ...NUMBERS]) c[name].value = rule[name] === null ? "" : String(rule[name]);
      c.shapes.value = rule.shapes ? rule.shapes.join(", ") : "";
      c.lab_grown.value = rule.lab_grown === null ? "" : String(rule.lab_grown);
      c.active.checked = rule.active;
      title.textContent = `Edit rule ${rule.priority}`;
      submit.textContent = "Save rule";
      cancel.hidden = false;
      c.priority.focus();
    }

    function clearErrors() {
      FIELDS.forEach((name) => setFieldError(c[name], null));
      const general = document.getElementById("rule-form-error");
      general.hidden = true;
      general.textContent = "";
    }

    function body() {
      const value = (name) => c[name].value.trim() || null;
      const shapes = value("shapes");
      const number = (name) => value(name);
      // Empty fields are left out: the API then applies its default, or says the field is required.
      const rule = {
        name: c.name.value.trim(), priority: number("priority") === null ? null : Number(number("priority")),
        feed: value("feed"), shapes: shapes ? shapes.split(",").map((s) => s.trim()).filter(Boolean) : null,
        carat_min: number("carat_min"), carat_max: number("carat_max"),
        lab_grown: c.lab_grown.value === "" ? null : c.lab_grown.value === "true",
        feed_price_min: number("feed_price_min"), feed_price_max: number("feed_price_max"),
        markup_ratio: number("markup_ratio"), rating: number("rating") === null ? null : Number(number("rating")),
        active: c.active.checked,
      };
      return Object.fromEntries(Object.entries(rule).filter(([, v]) => v !== null));
    }

    function showErrors(error) {
      const general = [];
      const problems = Array.isArray(error.details) ? error.details : [];
      for (const problem of problems) {
        const name = fieldOf(problem);
        const text = typeof problem === "string" ? problem : problem.msg;
        if (name) setFieldError(c[name], text);
        else general.push(text);
      }
      if (error.status === 409 && /priority/.test(error.message)) setFieldError(c.priority, error.message);
      else if (!problems.length || general.length) general.unshift(error.message);
      const box = document.getElementById("rule-form-error");
      box.textContent = general.join(" ");
      box.hidden = !general.length;
      const first = form.querySelector("[aria-invalid=true]");
      if (first) first.focus();
    }

    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      clearErrors();
      submit.disabled = true;
      try {
        const result = editing
          ? await api(`/pricing-rules/${editing.id}`, { method: "PUT", body: body() })
          : await api("/pricing-rules", { method: "POST", body: body() });
        clear(messages, notice(`Rule ${result.rule.priority} ${editing ? "saved" : "created"}; ${fmt.int(result.repriced)} stones repriced.`));
        reset();
        refresh();
      } catch (error) {
        showErrors(error);
      } finally {
        submit.disabled = false;
      }
    });
    return { form, edit };
  }

  refresh();
}

/** The form field a validation problem concerns: pydantic's `loc`, or the field a domain message names. */
function fieldOf(problem) {
  if (typeof problem === "string") {
    // Longest first: "feed_price_min must…" names feed_price_min, not feed.
    const names = [...FIELDS].sort((a, b) => b.length - a.length);
    return names.find((name) => problem.startsWith(name)) || null;
  }
  const loc = (problem.loc || []).filter((part) => part !== "body");
  return FIELDS.includes(loc[0]) ? loc[0] : null;
}

function range(low, high) {
  if (low === null && high === null) return "any";
  return `${low ?? "0"} – ${high ?? "∞"}`;
}

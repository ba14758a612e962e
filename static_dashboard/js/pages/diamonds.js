// Diamond query: every filter of GET /diamonds, a sortable table with thumbnails, and keyset paging both ways.
// The API's cursors only go forward, so going back pops a stack of the cursors of the pages already seen.
import { api } from "../api.js";
import { empty, field, fmt, h, heading, input, load, select } from "../ui.js";

const LISTS = [
  ["shapes", "Shapes", "ROUND, OVAL"], ["colors", "Colours", "D, E, F"], ["clarities", "Clarities", "VVS1, VS2"],
  ["cuts", "Cut", "IDEAL, EXCELLENT"], ["polish", "Polish", "EXCELLENT"], ["symmetry", "Symmetry", "EXCELLENT"],
  ["fluorescence", "Fluorescence", "NONE, FAINT"], ["labs", "Labs", "GIA, IGI"],
  ["availability", "Availability", "AVAILABLE, ON_HOLD"],
];
const RANGES = [
  ["carat_min", "Carats from"], ["carat_max", "Carats to"], ["price_min", "Price from ($)"],
  ["price_max", "Price to ($)"], ["feed_price_min", "Feed price from ($)"], ["feed_price_max", "Feed price to ($)"],
];
const SORTS = [["price", "Price"], ["carats", "Carats"], ["price_per_carat", "Price per carat"],
  ["color", "Colour"], ["clarity", "Clarity"], ["updated", "Updated"]];

// Kept between visits, so that returning from a stone's page shows the same results.
const memory = { filters: {}, sort: "price", order: "asc", limit: 20, cursors: [null] };

export function render({ main }) {
  const results = h("div", { id: "results" });
  const form = h("form", { class: "card filters", "aria-label": "Search filters", id: "search-form" });
  const controls = {};
  for (const [name, label, example] of LISTS) {
    controls[name] = input(name, { placeholder: example, value: memory.filters[name] || "" });
    form.append(field(label, controls[name], "comma list"));
  }
  for (const [name, label] of RANGES) {
    controls[name] = input(name, { type: "number", min: "0", step: "any", inputmode: "decimal", value: memory.filters[name] || "" });
    form.append(field(label, controls[name]));
  }
  controls.lab_grown = select("lab_grown", [["", "any"], ["false", "natural"], ["true", "lab-grown"]], memory.filters.lab_grown || "");
  controls.feed = input("feed", { placeholder: "nivoda", value: memory.filters.feed || "" });
  controls.status = select("status", [["active", "active"], ["deleted", "deleted"], ["all", "all"]], memory.filters.status || "active");
  controls.sort = select("sort", SORTS, memory.sort);
  controls.order = select("order", [["asc", "ascending"], ["desc", "descending"]], memory.order);
  controls.limit = select("limit", [[10, "10"], [20, "20"], [50, "50"], [100, "100"]], memory.limit);
  controls.count = h("input", { type: "checkbox", name: "count", id: "count-exact", checked: memory.filters.count === "exact" });
  form.append(
    field("Natural or lab-grown", controls.lab_grown), field("Feed", controls.feed), field("Listing", controls.status),
    field("Sort by", controls.sort), field("Order", controls.order), field("Per page", controls.limit),
    h("div", { class: "check" }, controls.count, h("label", { for: "count-exact" }, "Exact total")),
    h("div", { class: "actions" },
      h("button", { type: "submit" }, "Search"),
      h("button", { type: "reset", class: "secondary" }, "Clear")));

  form.addEventListener("submit", (event) => {
    event.preventDefault();
    readForm();
    memory.cursors = [null];
    search();
  });
  form.addEventListener("reset", () => setTimeout(() => {
    readForm();
    memory.cursors = [null];
    search();
  }));
  main.append(heading("Diamonds"), form, results);

  function readForm() {
    const filters = {};
    for (const [name] of [...LISTS, ...RANGES]) filters[name] = controls[name].value.trim();
    filters.lab_grown = controls.lab_grown.value;
    filters.feed = controls.feed.value.trim();
    filters.status = controls.status.value;
    filters.count = controls.count.checked ? "exact" : "";
    memory.filters = filters;
    memory.sort = controls.sort.value;
    memory.order = controls.order.value;
    memory.limit = Number(controls.limit.value);
  }

  function sortBy(key) {
    if (memory.sort === key) memory.order = memory.order === "asc" ? "desc" : "asc";
    else { memory.sort = key; memory.order = "asc"; }
    controls.sort.value = memory.sort;
    controls.order.value = memory.order;
    memory.cursors = [null];
    search();
  }

  function search() {
    const cursor = memory.cursors[memory.cursors.length - 1];
    const query = { ...memory.filters, sort: memory.sort, order: memory.order, limit: memory.limit, next: cursor };
    load(results, () => api("/diamonds", { query }), draw, "Searching");
  }

  function header(label, key) {
    if (label === PHOTO) return h("span", { class: "visually-hidden" }, label);  // named for screen readers only
    if (!key) return label;
    const current = memory.sort === key;
    const arrow = current ? (memory.order === "asc" ? " ▲" : " ▼") : "";
    return h("button", { type: "button", class: "sort", "data-sort": key, onclick: () => sortBy(key),
      "aria-label": `Sort by ${label}${current ? `, now ${memory.order === "asc" ? "ascending" : "descending"}` : ""}` },
    label + arrow);
  }

  function draw(page) {
    const pageNumber = memory.cursors.length;
    // The planner's estimate can be far off on a small or fresh table; never show fewer than are in view.
    const seen = (memory.cursors.length - 1) * memory.limit + page.items.length;
    const total = page.total !== null ? `${fmt.int(page.total)} stones`
      : `about ${fmt.int(Math.max(page.total_estimate, seen))} stones`;
    results.append(h("p", { class: "summary", id: "result-summary", role: "status" }, `Page ${pageNumber} · ${total}`));
    if (!page.items.length) {
      results.append(empty("No stones match these filters."));
    } else {
      const columns = [
        [PHOTO, null, (d) => thumbnail(d)],
        ["Shape", null, (d) => h("a", { href: `#/diamonds/${d.id}` }, d.shape)],
        ["Carats", "carats", (d) => d.carats],
        ["Colour", "color", (d) => fmt.text(d.color)],
        ["Clarity", "clarity", (d) => fmt.text(d.clarity)],
        ["Cut", null, (d) => fmt.text(d.cut)],
        ["Lab", null, (d) => fmt.text(d.lab)],
        ["Kind", null, (d) => (d.lab_grown ? "lab-grown" : "natural")],
        ["Availability", null, (d) => d.availability],
        ["Price", "price", (d) => fmt.money(d.price)],
        ["Per carat", "price_per_carat", (d) => fmt.money(d.price_per_carat)],
      ];
      const table = h("table", { id: "diamond-table" },
        h("caption", {}, "Stones"),
        h("thead", {}, h("tr", {}, columns.map(([label, key]) => h("th", {
          scope: "col",
          "aria-sort": key && memory.sort === key ? (memory.order === "asc" ? "ascending" : "descending") : null,
        }, header(label, key))))),
        h("tbody", {}, page.items.map((d) => h("tr", { "data-id": d.id },
          columns.map(([label, , value]) => h("td", { "data-label": label }, value(d)))))));
      results.append(h("div", { class: "table-wrap", tabindex: "0", role: "region", "aria-label": "Stones" }, table));
    }
    const pager = h("div", { class: "pager" },
      h("button", { type: "button", id: "page-prev", disabled: memory.cursors.length <= 1, onclick: () => {
        memory.cursors.pop();
        search();
      } }, "Previous page"),
      h("button", { type: "button", id: "page-next", disabled: !page.next, onclick: () => {
        memory.cursors.push(page.next);
        search();
      } }, "Next page"));
    results.append(pager);
  }

  search();
}

const PHOTO = "Photo";

function noThumbnail() {
  return h("span", { class: "thumb thumb-none", "aria-hidden": "true" });
}

function thumbnail(d) {
  if (!d.image_url) return noThumbnail();
  // A feed's media host may be down or gone: the empty tile replaces a broken-image icon.
  const img = h("img", { class: "thumb", src: d.image_url, alt: "", loading: "lazy", width: 48, height: 48 });
  img.addEventListener("error", () => img.replaceWith(noThumbnail()), { once: true });
  return img;
}



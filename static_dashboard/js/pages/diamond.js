// One stone: its record, media and certificate; hold, release and purchase for keys whose scope allows them.
import { allows, api } from "../api.js";
import { clear, confirmDialog, fmt, h, heading, load, notice } from "../ui.js";

const FACTS = [
  ["Feed", "feed"], ["Supplier stone id", "supplier_stone_id"], ["Supplier", "supplier_name"], ["Shape", "shape"],
  ["Carats", "carats"], ["Colour", "color"], ["Clarity", "clarity"], ["Cut", "cut"], ["Polish", "polish"],
  ["Symmetry", "symmetry"], ["Fluorescence", "fluorescence"], ["Fancy colour", "fancy_color"], ["Lab", "lab"],
  ["Certificate number", "certificate_number"], ["Length (mm)", "length_mm"], ["Width (mm)", "width_mm"],
  ["Depth (mm)", "depth_mm"], ["Depth %", "depth_pct"], ["Table %", "table_pct"], ["Availability", "availability"],
  ["Listing", "status"], ["Updated", "updated_at"],
];

function idempotencyKey() {
  if (crypto.randomUUID) return crypto.randomUUID();
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

export function render({ main, id }) {
  const messages = h("div", { id: "diamond-messages" });
  const body = h("div", { class: "stack" });
  main.append(heading(`Stone ${id}`), h("p", {}, h("a", { href: "#/diamonds" }, "Back to the search")), messages, body);
  const refresh = () => load(body, () => api(`/diamonds/${encodeURIComponent(id)}`), draw, "Loading the stone");

  function draw(d) {
    const photo = d.image_url ? h("img", { src: d.image_url, alt: `${d.shape} ${d.carats} ct`, class: "photo" }) : null;
    // A feed's media host may be down or gone: say so instead of showing a broken image.
    if (photo) photo.addEventListener("error", () => photo.replaceWith(h("p", {}, "The image could not be loaded.")), { once: true });
    const media = h("div", { class: "media" }, photo || h("p", {}, "No image."),
      h("ul", { class: "links" },
        d.video_url ? h("li", {}, h("a", { href: d.video_url, target: "_blank", rel: "noopener noreferrer" }, "Video")) : null,
        d.certificate_url
          ? h("li", {}, h("a", { href: d.certificate_url, target: "_blank", rel: "noopener noreferrer", id: "certificate-link" },
            `Certificate${d.lab ? ` (${d.lab} ${d.certificate_number || ""})` : ""}`))
          : h("li", {}, "No certificate document.")));
    const price = h("div", { class: "figures" },
      h("div", { class: "figure", id: "stone-price" }, h("span", { class: "figure-value" }, fmt.money(d.price)), h("span", { class: "figure-label" }, "price")),
      h("div", { class: "figure" }, h("span", { class: "figure-value" }, fmt.money(d.feed_price)), h("span", { class: "figure-label" }, "feed price")),
      h("div", { class: "figure" }, h("span", { class: "figure-value" }, fmt.text(d.markup_ratio)), h("span", { class: "figure-label" }, "markup")));
    const facts = h("dl", { class: "facts" }, FACTS.map(([label, key]) => [h("dt", {}, label),
      h("dd", {}, key.endsWith("_at") ? fmt.date(d[key]) : fmt.text(d[key]))]));
    body.append(h("section", { class: "card grid two" }, media, h("div", {}, price, facts)));
    if (allows("trade") && d.status === "active") body.append(actions(d));
  }

  function actions(d) {
    const section = h("section", { class: "card actions", "aria-label": "Trade" }, h("h2", {}, "Trade"));
    const act = async (label, call) => {
      try {
        const result = await call();
        clear(messages, notice(label(result)));
        refresh();
      } catch (error) {
        clear(messages, notice(error.message, "error"));
      }
    };
    if (d.availability !== "ON_HOLD" && d.availability !== "SOLD") {
      section.append(h("button", { type: "button", onclick: () => act(
        (hold) => `Hold placed${hold.held_until ? ` until ${fmt.date(hold.held_until)}` : ""}.`,
        () => api(`/diamonds/${d.id}/hold`, { method: "POST" })) }, "Hold"));
    }
    // Only the holder buys a held stone; its holder or an admin cancels the hold (the API refuses the rest).
    const mine = Boolean(d.hold && d.hold.mine);
    if (d.availability === "ON_HOLD" && d.hold && (mine || allows("admin"))) {
      section.append(h("button", { type: "button", onclick: () => act(() => "Hold cancelled.",
        () => api(`/diamonds/${d.id}/hold`, { method: "DELETE" })) }, "Cancel hold"));
    }
    if (d.availability === "ON_HOLD" && !mine) {
      section.append(h("p", { id: "held-by-another" }, "Held by another client: it cannot be bought until the hold ends."));
    }
    if (d.availability !== "SOLD" && (d.availability !== "ON_HOLD" || mine)) {
      // One key per intended purchase: a retry after a lost answer repeats it, never a second order.
      let key = null;
      section.append(h("button", { type: "button", class: "danger", onclick: async () => {
        const sure = await confirmDialog(`Buy stone ${d.id} (${d.shape} ${d.carats} ct) for ${fmt.money(d.price)}?`, "Buy");
        if (!sure) return;
        key = key || idempotencyKey();
        act((order) => `Purchased: order ${order.order_id}.`,
          () => api(`/diamonds/${d.id}/purchase`, { method: "POST", headers: { "Idempotency-Key": key } }));
      } }, "Purchase"));
    }
    return section;
  }

  refresh();
}

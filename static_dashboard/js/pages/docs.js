// API docs: the Swagger UI served by the API (its scripts too, so it works offline), linked, and embedded on request.
import { apiOrigin, API_ROOT } from "../api.js";
import { h, heading } from "../ui.js";

export function render({ main }) {
  const origin = apiOrigin() || location.origin;
  const docsUrl = `${origin}${API_ROOT}/docs`;
  const frameArea = h("div", { class: "docs-frame" });
  const embed = h("button", { type: "button", onclick: () => {
    embed.remove();
    frameArea.append(h("iframe", { src: docsUrl, title: "Opus API documentation (Swagger UI)" }));
  } }, "Show the documentation here");
  main.append(heading("API docs"),
    h("p", {}, "The REST API is described by its OpenAPI document; the Swagger UI lets you try every route with your key."),
    h("ul", { class: "links" },
      h("li", {}, h("a", { href: docsUrl, target: "_blank", rel: "noopener", id: "swagger-link" }, "Open the Swagger UI")),
      h("li", {}, h("a", { href: `${origin}${API_ROOT}/openapi.json`, target: "_blank", rel: "noopener" }, "OpenAPI document (JSON)"))),
    embed, frameArea);
}

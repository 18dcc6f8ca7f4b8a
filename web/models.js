// models.js - /models: the four Demucs models, whether this server has them, their size,
// and the command that installs each.

import { get } from "./api.js";
import { h, replace, errorText } from "./dom.js";

export async function modelsView(root) {
  let models;
  try {
    models = (await get("/api/processing/models")).data.models;
  } catch (e) {
    replace(root, h("section", {}, h("h1", {}, "Models"), h("p", { class: "error", role: "alert" }, errorText(e))));
    return;
  }
  replace(root, h("section", {},
    h("h1", {}, "Models"),
    h("p", {}, "Separation runs Meta's Demucs models on this server. An administrator installs a model once; every user can then use it."),
    h("div", { class: "table-wrap", tabindex: "0", role: "region", "aria-label": "Models" }, h("table", {},
      h("thead", {}, h("tr", {}, ["Model", "Stems", "Download", "Installed", "Install with"].map((c) => h("th", { scope: "col" }, c)))),
      h("tbody", {}, models.map((m) => h("tr", {},
        h("td", {}, h("strong", {}, m.name), h("div", { class: "muted" }, m.description)),
        h("td", {}, m.stem_names.join(", ")),
        h("td", {}, `${m.download_mb} MB`),
        h("td", {}, m.installed ? h("span", { class: "badge ok" }, "installed") : h("span", { class: "badge" }, "not installed")),
        h("td", {}, h("code", {}, m.install_command)))))))));
}

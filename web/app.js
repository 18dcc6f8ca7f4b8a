// app.js - the studio's entry: picks the view the path names, keeps the jobs panel and its
// socket alive across views (links inside the studio change the view without a reload),
// and turns every unexpected error into a notice instead of a silent console line.

import { JobsPanel, jobsView } from "./jobs.js";
import { libraryView } from "./library.js";
import { importView } from "./importer.js";
import { modelsView } from "./models.js";
import { h, replace, notify, errorText } from "./dom.js";
import { get } from "./api.js";

const app = document.getElementById("app");
const jobs = new JobsPanel(app.dataset.userId);
const view = h("div", { id: "view" });
replace(app, h("div", { class: "studio-grid" }, view, jobs.el));

let leaving = [];
let mePromise = null;
const ctx = {
  jobs,
  navigate,
  onLeave: (fn) => leaving.push(fn),
  // The account and what it can use (GET /api/me), asked once per page load.
  me: () => (mePromise ||= get("/api/me").then((r) => r.data, (e) => {
    mePromise = null; // asked again next time
    throw e;
  })),
};

const ROUTES = [
  [/^\/$/, () => libraryView(view, ctx), "Library"],
  [/^\/tracks\/?$/, () => libraryView(view, ctx), "Library"],
  // The track page's waveform, chart and mixer libraries load only when a track is opened.
  [/^\/tracks\/([0-9a-f-]{36})$/, async (m) => (await import("./track.js")).trackView(view, ctx, m[1]), "Track"],
  [/^\/(import|upload)$/, () => importView(view, ctx), "Import"],
  [/^\/jobs$/, () => jobsView(view, ctx), "Jobs"],
  [/^\/models$/, () => modelsView(view), "Models"],
];

async function show(path) {
  for (const fn of leaving) fn();
  leaving = [];
  for (const [re, fn, title] of ROUTES) {
    const m = path.match(re);
    if (!m) continue;
    document.title = `${title} · Sound Forge Alchemy`;
    for (const a of document.querySelectorAll("header nav a")) {
      const here = a.getAttribute("href") === path || (a.getAttribute("href") === "/" && path.startsWith("/tracks"));
      here ? a.setAttribute("aria-current", "page") : a.removeAttribute("aria-current");
    }
    try {
      await fn(m);
    } catch (e) {
      notify(errorText(e), "error");
    }
    view.querySelector("h1")?.setAttribute("tabindex", "-1");
    return;
  }
  replace(view, h("section", {}, h("h1", {}, "Not found"), h("p", {}, h("a", { href: "/" }, "Back to the library"))));
}

function navigate(path) {
  history.pushState(null, "", path);
  show(path).then(() => view.querySelector("h1")?.focus());
}

// Links to studio pages change the view in place; others (settings, files) load normally.
document.addEventListener("click", (e) => {
  const a = e.target.closest("a");
  if (!a || a.target || a.hasAttribute("download") || e.ctrlKey || e.metaKey || e.shiftKey || e.button !== 0) return;
  const url = new URL(a.href, location.href);
  if (url.origin !== location.origin || !ROUTES.some(([re]) => re.test(url.pathname))) return;
  e.preventDefault();
  if (url.pathname !== location.pathname) navigate(url.pathname);
});
window.addEventListener("popstate", () => show(location.pathname));
window.addEventListener("unhandledrejection", (e) => {
  e.preventDefault();
  notify(errorText(e.reason), "error");
});

jobs.start().catch((e) => notify(errorText(e), "error"));
show(location.pathname);

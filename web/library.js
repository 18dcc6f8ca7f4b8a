// library.js - the library (/): the user's tracks as a list or a grid, with search, sort,
// paging, and bulk analyse / separate / delete of the selected tracks.

import { get, post, del, newest } from "./api.js";
import { h, replace, notify, errorText, fmtDuration } from "./dom.js";

const PAGE_SIZE = 25;
// The server's orders (GET /api/tracks?sort=), across every page.
const SORTS = { newest: "Newest first", oldest: "Oldest first", title: "Title", artist: "Artist",
  duration: "Duration", tempo: "Tempo (BPM)", key: "Key (Camelot)" };

export async function libraryView(root, ctx) {
  const state = { page: 1, q: "", sort: "newest", layout: localStorage.getItem("sfa.layout") || "list", tracks: [], meta: null, selected: new Set() };
  const search = h("input", { type: "search", id: "lib-q", placeholder: "Title or artist", "aria-label": "Search the library" });
  const sort = h("select", { id: "lib-sort", "aria-label": "Sort" },
    Object.entries(SORTS).map(([k, text]) => h("option", { value: k }, `Sort: ${text}`)));
  const layoutBtn = h("button", { type: "button", class: "secondary", "aria-pressed": String(state.layout === "grid") }, "Grid view");
  const body = h("div", { "aria-live": "polite" }, h("p", { class: "muted" }, "Loading…"));
  const bulk = h("div", { class: "toolbar", role: "toolbar", "aria-label": "Selected tracks" });
  const pager = h("nav", { class: "pager", "aria-label": "Pages" });
  replace(root, h("section", {},
    h("div", { class: "toolbar" }, h("h1", { style: "margin:0 auto 0 0" }, "Library"),
      h("a", { class: "button secondary", href: "/export/rekordbox.xml", download: "" }, "Rekordbox XML"),
      h("a", { class: "button secondary", href: "/export/traktor.nml", download: "" }, "Traktor NML"),
      h("a", { class: "button", href: "/import" }, "Import music")),
    h("div", { class: "row" }, h("div", {}, search), h("div", {}, sort), layoutBtn),
    bulk, body, pager));

  let timer;
  search.addEventListener("input", () => {
    clearTimeout(timer);
    timer = setTimeout(() => { state.q = search.value.trim(); state.page = 1; load(); }, 250);
  });
  sort.addEventListener("change", () => { state.sort = sort.value; state.page = 1; load(); });
  layoutBtn.addEventListener("click", () => {
    state.layout = state.layout === "grid" ? "list" : "grid";
    localStorage.setItem("sfa.layout", state.layout);
    layoutBtn.setAttribute("aria-pressed", String(state.layout === "grid"));
    draw();
  });

  const begin = newest();
  async function load() {
    const stale = begin();
    try {
      const q = new URLSearchParams({ page: state.page, page_size: PAGE_SIZE, sort: state.sort });
      if (state.q) q.set("q", state.q);
      const res = await get(`/api/tracks?${q}`);
      if (stale()) return;
      state.tracks = res.data;
      state.meta = res.meta;
      for (const t of res.data) ctx.jobs.titles.set(t.id, t.title);
      state.selected = new Set([...state.selected].filter((id) => res.data.some((t) => t.id === id)));
      draw();
    } catch (e) {
      if (!stale()) replace(body, h("p", { class: "error", role: "alert" }, errorText(e)));
    }
  }

  function checkbox(t) {
    return h("input", { type: "checkbox", "aria-label": `Select ${t.title}`, checked: state.selected.has(t.id),
      onchange: (e) => { e.target.checked ? state.selected.add(t.id) : state.selected.delete(t.id); drawBulk(); } });
  }

  function art(t, cls) {
    return t.album_art_url ? h("img", { class: cls, src: t.album_art_url, alt: "" }) : h("div", { class: cls, "aria-hidden": "true" });
  }

  function keyText(t) {
    const a = t.analysis;
    if (!a || !a.key) return "–";
    return a.camelot ? `${a.key} (${a.camelot})` : a.key;
  }

  function stemText(t) {
    return t.stem_count ? h("span", { class: "badge ok" }, `${t.stem_count} stems`) : h("span", { class: "badge" }, "no stems");
  }

  function link(t) {
    return h("a", { href: `/tracks/${t.id}`, "data-nav": "" }, t.title);
  }

  function draw() {
    drawBulk();
    const tracks = state.tracks;
    if (!tracks.length) {
      replace(body, h("p", {}, state.q ? `Nothing in your library matches “${state.q}”.` : "Your library is empty. ",
        state.q ? "" : h("a", { href: "/import" }, "Import some music.")));
    } else if (state.layout === "grid") {
      replace(body, h("ul", { class: "tracks-grid", "aria-label": "Tracks" }, tracks.map((t) => h("li", {},
        art(t, "art"), h("div", {}, checkbox(t), " ", link(t)), h("div", { class: "muted" }, t.artist || "–"),
        h("div", {}, `${fmtDuration(t.duration)} · ${t.analysis?.tempo ? `${Math.round(t.analysis.tempo)} BPM` : "– BPM"} · ${keyText(t)}`),
        stemText(t)))));
    } else {
      replace(body, h("div", { class: "table-wrap", tabindex: "0", role: "region", "aria-label": "Tracks" }, h("table", {},
        h("caption", { class: "muted", style: "text-align:left" }, `${state.meta?.total_count ?? tracks.length} tracks`),
        h("thead", {}, h("tr", {}, h("th", { scope: "col" }, h("span", { class: "visually-hidden" }, "Select")), h("th", { scope: "col" }, h("span", { class: "visually-hidden" }, "Art")),
          ["Title", "Artist", "Duration", "Tempo", "Key", "Stems"].map((c) => h("th", { scope: "col" }, c)))),
        h("tbody", {}, tracks.map((t) => h("tr", {},
          h("td", {}, checkbox(t)), h("td", {}, art(t, "thumb")), h("td", {}, link(t)), h("td", {}, t.artist || "–"),
          h("td", {}, fmtDuration(t.duration)), h("td", {}, t.analysis?.tempo ? `${Math.round(t.analysis.tempo)} BPM` : "–"),
          h("td", {}, keyText(t)), h("td", {}, stemText(t))))))));
    }
    const m = state.meta;
    replace(pager, m && m.total_pages > 1 ? [
      h("button", { type: "button", class: "secondary", disabled: state.page <= 1, onclick: () => { state.page--; load(); } }, "Previous page"),
      h("span", {}, `Page ${m.page} of ${m.total_pages}`),
      h("button", { type: "button", class: "secondary", disabled: state.page >= m.total_pages, onclick: () => { state.page++; load(); } }, "Next page"),
    ] : []);
  }

  function drawBulk() {
    const n = state.selected.size;
    replace(bulk, n ? [
      h("span", {}, `${n} selected`),
      h("button", { type: "button", onclick: () => each("Analyze", (id) => post("/api/analysis/analyze", { track_id: id, features: ["all"] })) }, "Analyze selected"),
      h("button", { type: "button", onclick: () => each("Separate", (id) => post("/api/processing/separate", { track_id: id, model: "htdemucs" })) }, "Separate selected"),
      h("a", { class: "button secondary", download: "", href: `/export/rekordbox.xml?track_ids=${[...state.selected].join(",")}` }, "Rekordbox XML of these"),
      h("button", { type: "button", class: "danger", onclick: () => confirm(`Delete ${n} track(s) with their stems and analyses?`) && each("Delete", (id) => del(`/api/tracks/${id}`), true) }, "Delete selected"),
    ] : []);
  }

  async function each(what, fn, reload = false) {
    let ok = 0;
    for (const id of [...state.selected]) {
      try {
        const res = await fn(id);
        if (res?.data?.job_id) ctx.jobs.add({ id: res.data.job_id, track_id: id, type: what === "Analyze" ? "analysis" : "processing" });
        ok++;
      } catch (e) {
        const t = state.tracks.find((x) => x.id === id);
        notify(`${t ? t.title : id}: ${errorText(e)}`, "error");
      }
    }
    if (ok) notify(`${what}: ${ok} track(s) done.`, "ok");
    if (reload) load();
    else { state.selected.clear(); draw(); }
  }

  // A finished analysis, separation or download changes what its row shows.
  let again;
  const off = ctx.jobs.onChange((kind, job) => {
    if (kind !== "completed" || !state.tracks.some((t) => t.id === job.track_id)) return;
    clearTimeout(again);
    again = setTimeout(load, 300);
  });
  ctx.onLeave(() => { off(); clearTimeout(again); clearTimeout(timer); });
  await load();
}

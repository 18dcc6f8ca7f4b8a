// jobs.js - the live jobs panel: a region named "Jobs", fed by the Phoenix socket.
//
// The first list comes from GET /api/jobs; after that the socket (topic user:<id>, the
// session cookie authenticates it) pushes job:progress, job:completed and job:failed. The
// phoenix client reconnects by itself; only while it is down does the panel poll.

import { Socket } from "./vendor/phoenix.js";
import { get, post, del, newest } from "./api.js";
import { h, replace, notify, errorText } from "./dom.js";

const RUNNING = new Set(["queued", "running", "downloading", "processing", "analyzing"]);
const LABEL = { processing: "Separation", analysis: "Analysis", download: "Download", transform: "Render", probe: "Probe" };
const POLL_MS = 5000;

export class JobsPanel {
  constructor(userId) {
    this.userId = userId;
    this.jobs = new Map(); // id -> job (as the API shows it)
    this.titles = new Map(); // track id -> title
    this.listeners = new Set();
    this.asked = new Set(); // ids of unlisted jobs and unnamed tracks already looked up
    this.list = h("ul");
    this.el = h("section", { id: "jobs", "aria-labelledby": "jobs-title" },
      h("h2", { id: "jobs-title" }, "Jobs"),
      h("p", { class: "muted", id: "jobs-status", role: "status" }, "Connecting…"),
      this.list);
  }

  // fn(event, job) runs for every change: "progress", "completed", "failed", "added".
  onChange(fn) {
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  }

  emit(kind, job) {
    for (const fn of this.listeners) fn(kind, job);
  }

  async start() {
    await this.refresh();
    this.socket = new Socket("/socket", {});
    this.socket.onOpen(() => {
      this.status("Live");
      clearInterval(this.poll);
      this.poll = null;
      this.refresh(); // catch up on what happened while the socket was down
    });
    this.socket.onError(() => this.down());
    this.socket.onClose(() => this.down());
    this.socket.connect();
    const ch = this.socket.channel(`user:${this.userId}`, {});
    ch.on("job:progress", (p) => this.update(p.job_id, { status: p.status, progress: p.progress, message: p.message }, "progress"));
    ch.on("job:completed", (p) => {
      this.update(p.job_id, { status: "completed", progress: 100, result: p.result, type: p.job_type, track_id: p.track_id }, "completed");
      notify(`${LABEL[p.job_type] || "Job"} finished${this.trackName(p.track_id)}.`, "ok");
    });
    ch.on("job:failed", (p) => {
      this.update(p.job_id, { status: "failed", error: p.error, type: p.job_type }, "failed");
      notify(`${LABEL[p.job_type] || "Job"} failed${this.trackName(this.jobs.get(p.job_id)?.track_id)}: ${p.error}`, "error");
    });
    ch.join();
  }

  trackName(trackId) {
    const t = trackId && this.titles.get(trackId);
    return t ? ` for “${t}”` : "";
  }

  down() {
    this.status("Reconnecting… (updating every few seconds meanwhile)");
    if (!this.poll) this.poll = setInterval(() => this.refresh(), POLL_MS);
  }

  status(text) {
    const s = this.el.querySelector("#jobs-status");
    if (s) s.textContent = text;
  }

  async refresh() {
    try {
      const res = await get("/api/jobs?page_size=20");
      for (const j of res.data) this.jobs.set(j.id, j);
      this.render();
      if (await this.learnTitles(res.data)) this.render();
    } catch (e) {
      this.status(errorText(e));
    }
  }

  // Looks up, once each, the titles of the jobs' tracks this page has not seen; true when
  // it learnt any. A deleted track stays unnamed.
  async learnTitles(jobs) {
    const unknown = [...new Set(jobs.map((j) => j.track_id).filter((id) => id && !this.titles.has(id) && !this.asked.has(id)))];
    for (const id of unknown) this.asked.add(id);
    const got = await Promise.all(unknown.map((id) => get(`/api/tracks/${id}`).then((r) => {
      this.titles.set(id, r.data.title);
      return true;
    }, () => false)));
    return got.some(Boolean);
  }

  // A job this page just created: shown at once, before its first event.
  add(job) {
    this.jobs.set(job.id || job.job_id, { id: job.id || job.job_id, status: "queued", progress: 0, ...job });
    this.render();
    this.emit("added", this.jobs.get(job.id || job.job_id));
  }

  update(id, fields, kind) {
    const j = { ...(this.jobs.get(id) || { id }), ...fields };
    this.jobs.set(id, j);
    this.render();
    this.emit(kind, j);
    // A job this page has not listed (started elsewhere): learn what it is, once.
    if (!j.type && !this.asked.has(id)) {
      this.asked.add(id);
      this.refresh();
    }
  }

  render() {
    const jobs = [...this.jobs.values()].sort((a, b) =>
      (RUNNING.has(b.status) - RUNNING.has(a.status)) || String(b.created_at || "").localeCompare(String(a.created_at || "")));
    if (!jobs.length) {
      replace(this.list, h("li", { class: "muted" }, "No jobs yet."));
      return;
    }
    replace(this.list, jobs.slice(0, 20).map((j) => this.item(j)));
  }

  item(j) {
    const running = RUNNING.has(j.status);
    const name = `${LABEL[j.type] || "Job"}${this.trackName(j.track_id)}`;
    const li = h("li", { dataset: { jobId: j.id, status: j.status } },
      h("div", {}, h("strong", {}, name), " ", h("span", { class: "badge" }, j.status)));
    if (running) {
      const pct = Math.max(0, Math.min(100, j.progress || 0));
      li.append(h("div", { class: "bar", role: "progressbar", "aria-label": `${name} progress`,
        "aria-valuemin": "0", "aria-valuemax": "100", "aria-valuenow": String(pct),
        "aria-valuetext": `${pct}%${j.message ? `, ${j.message}` : ""}` },
      h("span", { style: `width:${pct}%` })));
      if (j.message) li.append(h("div", { class: "muted" }, j.message));
      li.append(h("button", { type: "button", class: "secondary", onclick: () => this.cancel(j) }, `Cancel ${LABEL[j.type] || "job"}`));
    } else if (j.status === "failed") {
      li.append(h("div", { class: "error" }, j.error || "failed"));
      li.append(h("button", { type: "button", class: "secondary", onclick: () => this.retry(j) }, `Retry ${LABEL[j.type] || "job"}`));
    }
    return li;
  }

  async cancel(j) {
    try {
      await del(`/api/jobs/${j.id}`);
    } catch (e) {
      notify(errorText(e), "error");
    }
  }

  async retry(j) {
    try {
      const res = await post(`/api/jobs/${j.id}/retry`, {});
      this.add(res.data);
    } catch (e) {
      notify(errorText(e), "error");
    }
  }
}

// /jobs: every job of the account, paged, filtered by status and type; rows follow the
// panel's live events, and running or failed jobs can be cancelled or retried here too.
const STATUSES = ["queued", "running", "downloading", "processing", "analyzing", "completed", "failed"];

export async function jobsView(root, ctx) {
  const state = { page: 1, status: "", type: "" };
  const status = h("select", { id: "jobs-filter-status", "aria-label": "Status" },
    h("option", { value: "" }, "Any status"), STATUSES.map((s) => h("option", { value: s }, s)));
  const type = h("select", { id: "jobs-filter-type", "aria-label": "Type" },
    h("option", { value: "" }, "Any type"), Object.entries(LABEL).map(([v, t]) => h("option", { value: v }, t)));
  const body = h("div", { "aria-live": "polite" }, h("p", { class: "muted" }, "Loading…"));
  const pager = h("nav", { class: "pager", "aria-label": "Pages" });
  replace(root, h("section", {}, h("h1", {}, "Jobs"),
    h("div", { class: "row" }, h("div", {}, h("label", { for: "jobs-filter-status" }, "Status"), status),
      h("div", {}, h("label", { for: "jobs-filter-type" }, "Type"), type)),
    body, pager));
  for (const [el, k] of [[status, "status"], [type, "type"]])
    el.addEventListener("change", () => { state[k] = el.value; state.page = 1; load(); });

  const begin = newest();
  async function load() {
    const stale = begin();
    const q = new URLSearchParams({ page: state.page, page_size: 25 });
    if (state.status) q.set("status", state.status);
    if (state.type) q.set("type", state.type);
    let res;
    try {
      res = await get(`/api/jobs?${q}`);
    } catch (e) {
      if (!stale()) replace(body, h("p", { class: "error", role: "alert" }, errorText(e)));
      return;
    }
    if (stale()) return;
    const panel = ctx.jobs;
    await panel.learnTitles(res.data); // a deleted track stays "Track"
    if (stale()) return;
    replace(body, res.data.length ? h("div", { class: "table-wrap", tabindex: "0", role: "region", "aria-label": "Job list" },
      h("table", {},
        h("caption", { class: "muted", style: "text-align:left" }, `${res.meta.total_count} jobs`),
        h("thead", {}, h("tr", {}, ["Job", "Track", "Status", "Started", "Finished", ""].map((c) =>
          h("th", { scope: "col" }, c || h("span", { class: "visually-hidden" }, "Actions"))))),
        h("tbody", {}, res.data.map((j) => h("tr", { dataset: { jobId: j.id } },
          h("td", {}, LABEL[j.type] || j.type),
          h("td", {}, j.track_id ? h("a", { href: `/tracks/${j.track_id}`, "data-nav": "" }, panel.titles.get(j.track_id) || "Track") : "–"),
          h("td", {}, h("span", { class: "badge" }, j.status),
            RUNNING.has(j.status) && j.status !== "queued" ? ` ${j.progress}%${j.message ? ` · ${j.message}` : ""}` : "",
            j.error ? h("div", { class: "error" }, j.error) : null),
          h("td", {}, j.started_at ? new Date(j.started_at).toLocaleString() : "–"),
          h("td", {}, j.finished_at ? new Date(j.finished_at).toLocaleString() : "–"),
          h("td", {}, RUNNING.has(j.status)
            ? h("button", { type: "button", class: "secondary", onclick: () => panel.cancel(j) }, `Cancel ${LABEL[j.type] || "job"}`)
            : j.status === "failed"
              ? h("button", { type: "button", class: "secondary", onclick: () => panel.retry(j) }, `Retry ${LABEL[j.type] || "job"}`)
              : null)))))) : h("p", {}, state.status || state.type ? "No job matches these filters." : "No jobs yet."));
    const m = res.meta;
    replace(pager, m.total_pages > 1 ? [
      h("button", { type: "button", class: "secondary", disabled: state.page <= 1, onclick: () => { state.page--; load(); } }, "Previous page"),
      h("span", {}, `Page ${m.page} of ${m.total_pages}`),
      h("button", { type: "button", class: "secondary", disabled: state.page >= m.total_pages, onclick: () => { state.page++; load(); } }, "Next page"),
    ] : []);
  }

  // The panel's live events change what the rows show: read the page again, at most
  // once per second while events stream in.
  let again = null;
  const off = ctx.jobs.onChange((kind) => {
    if (kind === "progress" && again) return;
    clearTimeout(again);
    again = setTimeout(() => { again = null; load(); }, kind === "progress" ? 1000 : 200);
  });
  ctx.onLeave(() => { off(); clearTimeout(again); });
  await load();
}

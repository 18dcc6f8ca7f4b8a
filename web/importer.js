// importer.js - /import: upload audio files (each with its own progress bar and error) and
// bring in Spotify tracks, albums and playlists, then download them at a chosen quality.

import { post, upload } from "./api.js";
import { h, replace, notify, errorText } from "./dom.js";

export function importView(root, ctx) {
  const input = h("input", { type: "file", id: "upload-files", multiple: true, accept: "audio/*,.flac,.wav,.mp3,.m4a,.ogg,.opus,.aiff,.webm" });
  const drop = h("div", { class: "drop" },
    h("label", { for: "upload-files" }, "Upload audio files"),
    h("p", { class: "muted" }, "Pick files or drop them here: MP3, FLAC, WAV, M4A, Ogg, Opus, AIFF…"), input);
  input.setAttribute("aria-label", "Upload audio files");
  const uploads = h("ul", { class: "uploads", "aria-label": "Uploads" });

  const link = h("input", { type: "url", id: "spotify-link", placeholder: "https://open.spotify.com/track/…", "aria-label": "Spotify link" });
  const found = h("div", { "aria-live": "polite" });
  const fetchBtn = h("button", { type: "submit" }, "Fetch");
  const spotifyForm = h("form", { class: "row" }, h("div", {}, h("label", { for: "spotify-link" }, "Spotify link"), link), fetchBtn);

  replace(root,
    h("section", {}, h("h1", {}, "Import music"), drop, uploads),
    h("section", {}, h("h2", {}, "From Spotify"),
      h("p", { class: "muted" }, "Paste a track, album or playlist link: its tracks join your library, then download their audio."),
      spotifyForm, found));

  input.addEventListener("change", () => { for (const f of input.files) send(f); input.value = ""; });
  drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (e) => {
    e.preventDefault();
    drop.classList.remove("over");
    for (const f of e.dataTransfer.files) send(f);
  });

  function send(file) {
    const bar = h("progress", { max: "100", value: "0", "aria-label": `Uploading ${file.name}` });
    const status = h("span", { class: "muted" }, " waiting…");
    const li = h("li", {}, h("strong", {}, file.name), " ", bar, status);
    uploads.append(li);
    const form = new FormData();
    form.append("title", file.name.replace(/\.[^.]+$/, ""));
    form.append("file", file);
    upload("/api/tracks", form, (f) => { bar.value = Math.round(f * 100); status.textContent = ` ${Math.round(f * 100)}%`; })
      .then((res) => {
        bar.value = 100;
        replace(status, " added: ", h("a", { href: `/tracks/${res.data.id}`, "data-nav": "" }, res.data.title));
        ctx.jobs.titles.set(res.data.id, res.data.title);
      })
      .catch((e) => {
        bar.remove();
        replace(status, h("span", { class: "error", role: "alert" }, ` ${errorText(e)}`));
      });
  }

  spotifyForm.addEventListener("submit", async (e) => {
    e.preventDefault();
    fetchBtn.disabled = true;
    replace(found, h("p", { class: "muted" }, "Asking Spotify…"));
    try {
      const res = await post("/api/spotify/fetch", { url: link.value.trim() });
      showFound(res.data);
    } catch (err) {
      replace(found, h("p", { class: "error", role: "alert" }, errorText(err)));
    } finally {
      fetchBtn.disabled = false;
    }
  });

  function showFound(d) {
    const tracks = d.tracks || (d.track ? [d.track] : []);
    const quality = h("select", { id: "dl-quality", "aria-label": "Quality" },
      [["lossless", "Lossless (FLAC)"], ["high", "High (MP3 320)"], ["medium", "Medium (MP3 192)"], ["low", "Low (MP3 128)"]]
        .map(([v, t]) => h("option", { value: v }, t)));
    const dl = h("button", { type: "button" }, tracks.length > 1 ? `Download ${tracks.length} tracks` : "Download");
    dl.addEventListener("click", async () => {
      dl.disabled = true;
      try {
        const res = await post("/api/download/track", { url: link.value.trim(), quality: quality.value });
        const jobs = res.data.jobs || (res.data.job_id ? [res.data] : []);
        for (const j of jobs) ctx.jobs.add({ id: j.job_id || j.id, track_id: j.track_id, type: "download" });
        notify(`Queued ${jobs.length || 1} download(s).`, "ok");
      } catch (err) {
        notify(errorText(err), "error");
      } finally {
        dl.disabled = false;
      }
    });
    for (const t of tracks) ctx.jobs.titles.set(t.id, t.title);
    replace(found,
      h("p", {}, `${d.type[0].toUpperCase()}${d.type.slice(1)}${(d[d.type] || {}).name ? `: ${d[d.type].name}` : ""} — ${tracks.length} track(s) now in your library.`),
      h("ul", {}, tracks.slice(0, 50).map((t) => h("li", {}, h("a", { href: `/tracks/${t.id}`, "data-nav": "" }, t.title), t.artist ? ` — ${t.artist}` : ""))),
      tracks.length > 50 ? h("p", { class: "muted" }, `…and ${tracks.length - 50} more.`) : null,
      h("div", { class: "row" }, h("div", {}, h("label", { for: "dl-quality" }, "Quality"), quality), dl));
  }
}

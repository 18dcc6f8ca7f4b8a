// track.js - a track's page (/tracks/:id): waveform with the beat grid (bar starts darker)
// and the sections, the analysis (tempo, time signature, a chord lane, key changes,
// key, Camelot, energy, loudness (EBU R128), chroma and MFCC heatmaps, spectral centroid and rolloff over time),
// starting an analysis or a separation, this track's separations, downloads, and the stem
// mixer with its DAW editor (mixer.js).

import WaveSurfer from "./vendor/wavesurfer.js";
import RegionsPlugin from "./vendor/wavesurfer-regions.js";
import uPlot from "./vendor/uplot.js";
import { get, post, del } from "./api.js";
import { h, replace, notify, errorText, fmtDuration, fmtBytes } from "./dom.js";
import { Mixer } from "./mixer.js";

const FORMATS = [["wav", "WAV (16-bit)"], ["wav24", "WAV (24-bit)"], ["f32", "WAV (32-bit float)"], ["flac", "FLAC"], ["mp3", "MP3 (320 kbit/s)"]];

export async function trackView(root, ctx, id) {
  // The user may leave while this view still waits for the server: from then on it must
  // not draw into the page or start anything (the next view owns root).
  let left = false;
  let dropPlot = null; // the centroid/rolloff chart's teardown
  const cleanups = [() => dropPlot?.()];
  ctx.onLeave(() => {
    left = true;
    for (const fn of cleanups) fn();
  });
  let track, models, quota = null;
  try {
    [track, models] = await Promise.all([get(`/api/tracks/${id}`), get("/api/processing/models")]);
    track = track.data;
    models = models.data.models;
  } catch (e) {
    if (left) return;
    replace(root, h("section", {}, h("h1", {}, "Track"), h("p", { class: "error", role: "alert" }, errorText(e)),
      h("p", {}, h("a", { href: "/", "data-nav": "" }, "Back to the library"))));
    return;
  }
  const me = await ctx.me();
  if (me.lalalai) {
    try {
      quota = (await get("/api/lalalai/quota")).data;
    } catch (e) {
      notify(`lal.ai: ${errorText(e)}`, "error");
    }
  }
  if (left) return;
  ctx.jobs.titles.set(track.id, track.title);
  document.title = `${track.title} · Sound Forge Alchemy`;

  const analysisBox = h("section", { "aria-labelledby": "analysis-title" });
  const separations = h("section", { "aria-labelledby": "seps-title" });
  const mixerBox = h("section", { "aria-labelledby": "mixer-title" });
  replace(root,
    h("section", {},
      h("div", { class: "toolbar" },
        track.album_art_url ? h("img", { class: "thumb", src: track.album_art_url, alt: "" }) : null,
        h("h1", { style: "margin:0" }, track.title)),
      h("p", { class: "muted" }, [track.artist, track.album].filter(Boolean).join(" — ") || "Unknown artist",
        ` · ${fmtDuration(track.audio?.duration || track.duration)}`,
        track.audio ? ` · ${track.audio.format} · ${fmtBytes(track.audio.file_size)}` : " · no audio yet"),
      h("div", { id: "waveform", "aria-label": "Waveform with the beat grid", role: "img" }),
      actions()),
    analysisBox, separations, mixerBox);

  const wf = track.audio ? waveform(track) : null;
  cleanups.push(() => wf?.destroy());
  await Promise.all([drawAnalysis(), drawSeparations()]);
  if (left) return;
  const mixer = new Mixer(mixerBox, ctx, track);
  mixer.load(track.stems || []);

  const off = ctx.jobs.onChange((kind, job) => {
    if (job.track_id !== track.id || (kind !== "completed" && kind !== "failed")) return;
    if (job.type === "analysis") drawAnalysis();
    if (job.type === "processing" && kind === "failed") drawSeparations();
    if (job.type === "processing" && kind === "completed") {
      get(`/api/tracks/${id}`).then((r) => {
        track.stems = r.data.stems || [];
        drawSeparations();
        mixer.load(track.stems);
      }).catch((e) => notify(errorText(e), "error"));
    }
  });
  cleanups.push(off, () => mixer.destroy());

  function actions() {
    const model = h("select", { id: "sep-model" }, models.map((m) =>
      h("option", { value: m.name }, `${m.name} — ${m.stems} stems${m.installed ? "" : " (not installed)"}`)));
    const engine = h("select", { id: "sep-engine" },
      h("option", { value: "local" }, "Local (Demucs on this server)"),
      h("option", { value: "lalalai" }, quota ? `lal.ai cloud — ${Math.floor(quota.remaining_minutes)} min left` : me.lalalai ? "lal.ai cloud" : "lal.ai cloud (needs a license key in Settings)"));
    const format = h("select", { id: "sep-format" }, FORMATS.map(([v, t]) => h("option", { value: v }, t)));
    // Demucs's --two-stems: one stem and the rest of the mix ("the song without X").
    const two = h("select", { id: "sep-two" });
    const fillTwo = () => {
      const m = models.find((x) => x.name === model.value);
      replace(two, h("option", { value: "" }, "Every stem"),
        (m?.stem_names || []).map((n) => h("option", { value: n }, `${n} + no_${n}`)));
      two.disabled = engine.value !== "local";
    };
    model.addEventListener("change", fillTwo);
    engine.addEventListener("change", fillTwo);
    const hint = h("p", { class: "muted", "aria-live": "polite" });
    const showHint = () => {
      const m = models.find((x) => x.name === model.value);
      hint.textContent = engine.value === "local" && m && !m.installed
        ? `${m.name} is not installed on this server; an administrator installs it with: ${m.install_command}`
        : engine.value === "lalalai" && !me.lalalai ? "Add your lal.ai license key in Settings to use the cloud engine." : "";
    };
    model.addEventListener("change", showHint);
    engine.addEventListener("change", showHint);
    const installed = models.find((m) => m.installed);
    if (installed) model.value = installed.name;
    showHint();
    fillTwo();
    const analyze = h("button", { type: "button", onclick: async () => {
      analyze.disabled = true;
      try {
        const r = await post("/api/analysis/analyze", { track_id: track.id, features: ["all"] });
        ctx.jobs.add({ id: r.data.job_id, type: "analysis", track_id: track.id });
      } catch (e) {
        notify(errorText(e), "error");
      } finally {
        analyze.disabled = false;
      }
    } }, "Analyze");
    const separate = h("button", { type: "button", onclick: async () => {
      separate.disabled = true;
      try {
        const body = { track_id: track.id, model: model.value, engine: engine.value, output_format: format.value };
        if (two.value && !two.disabled) body.two_stems = two.value;
        const r = await post("/api/processing/separate", body);
        ctx.jobs.add({ id: r.data.job_id, type: "processing", track_id: track.id });
        drawSeparations();
      } catch (e) {
        notify(errorText(e), "error");
      } finally {
        separate.disabled = false;
      }
    } }, "Separate stems");
    // Key-shift and time-stretch: a new track (with the latest stems rendered alike).
    const semis = h("input", { id: "tf-semitones", type: "number", min: "-12", max: "12", step: "0.5", value: "0" });
    const bpm = h("input", { id: "tf-bpm", type: "number", min: "20", max: "400", step: "0.1", placeholder: "unchanged" });
    const transform = h("button", { type: "button", onclick: async () => {
      transform.disabled = true;
      try {
        const body = { track_id: track.id, semitones: Number(semis.value) || 0 };
        if (bpm.value) body.target_bpm = Number(bpm.value);
        const r = await post("/api/processing/transform", body);
        ctx.jobs.add({ id: r.data.job_id, type: "transform", track_id: r.data.track_id });
        notify(`“${r.data.track.title}” is being rendered; it is in your library.`, "ok");
      } catch (e) {
        notify(errorText(e), "error");
      } finally {
        transform.disabled = false;
      }
    } }, "Render shifted copy");
    const label = (forId, text, el) => { el.setAttribute("aria-label", text); return h("div", {}, h("label", { for: forId }, text), el); };
    return h("div", {},
      h("div", { class: "row" }, label("sep-model", "Model", model), label("sep-engine", "Engine", engine),
        label("sep-format", "Output format", format), label("sep-two", "Stems", two)),
      hint,
      h("div", { class: "row" }, label("tf-semitones", "Semitones", semis), label("tf-bpm", "Target BPM", bpm),
        h("div", {}, transform)),
      h("div", { class: "toolbar" }, analyze, separate,
        h("button", { type: "button", class: "danger", onclick: async () => {
          if (!confirm(`Delete “${track.title}” with its stems and analyses?`)) return;
          try {
            await del(`/api/tracks/${track.id}`);
            notify(`“${track.title}” was deleted.`, "ok");
            ctx.navigate("/");
          } catch (e) {
            notify(errorText(e), "error");
          }
        } }, "Delete track")));
  }

  function waveform(t) {
    const regions = RegionsPlugin.create();
    const ws = WaveSurfer.create({ container: root.querySelector("#waveform"), url: t.audio.url, height: 96,
      waveColor: "#9a88e0", progressColor: "#5b3cc4", cursorColor: "#1d1d28", plugins: [regions] });
    ws.on("error", (e) => notify(`The waveform could not be drawn: ${errorText(e)}`, "error"));
    ws.regions = regions;
    return ws;
  }

  // The chords as a lane: one cell per chord, as wide as it lasts, shaded by confidence.
  function chordLane(chords) {
    if (!chords.length) return h("p", { class: "muted" }, "No chords found.");
    const at = (t) => `${t.toFixed(1)} s`;
    return h("div", {}, h("h3", {}, "Chords"),
      h("ol", { class: "chord-lane", "aria-label": "Chords over time", tabindex: "0" }, chords.map((c) =>
        h("li", {
          class: c.label === "N" ? "none" : "",
          style: `flex-grow:${Math.max(0.01, c.end - c.start).toFixed(3)};background:rgba(91,60,196,${(0.06 + 0.3 * c.confidence).toFixed(2)})`,
          title: `${c.label === "N" ? "No chord" : c.label}, ${at(c.start)}–${at(c.end)}, confidence ${Math.round(100 * c.confidence)} %`,
        }, h("span", { class: "chord" }, c.label), h("span", { class: "visually-hidden" }, ` from ${at(c.start)} to ${at(c.end)}`)))));
  }

  async function drawAnalysis() {
    let full = null;
    try {
      full = (await get(`/export/analysis/${track.id}`)).analysis;
    } catch (e) {
      if (e.status !== 404) {
        replace(analysisBox, h("h2", { id: "analysis-title" }, "Analysis"), h("p", { class: "error", role: "alert" }, errorText(e)));
        return;
      }
    }
    if (!full) {
      replace(analysisBox, h("h2", { id: "analysis-title" }, "Analysis"),
        h("p", {}, "Not analysed yet: press “Analyze” to find its tempo, key, beats and more."));
      return;
    }
    const stat = (label, value) => h("div", { class: "stat" }, h("span", { class: "muted" }, label), h("b", {}, value ?? "–"));
    replace(analysisBox, h("h2", { id: "analysis-title" }, "Analysis"),
      h("div", { class: "stats" },
        stat("Tempo", full.tempo ? `${full.tempo.toFixed(1)} BPM` : null),
        stat("Tempo confidence", full.tempo && full.tempo_confidence != null ? `${Math.round(100 * full.tempo_confidence)} %` : null),
        stat("Key", full.key),
        stat("Key confidence", full.key && full.key_confidence != null ? `${Math.round(100 * full.key_confidence)} %` : null),
        stat("Camelot", full.camelot),
        stat("Energy (RMS)", full.energy !== undefined ? full.energy.toFixed(3) : null),
        stat("Level", full.energy > 0 ? `${(20 * Math.log10(full.energy)).toFixed(1)} dBFS RMS` : null),
        stat("Loudness", full.loudness?.integrated_lufs != null ? `${full.loudness.integrated_lufs.toFixed(1)} LUFS` : null),
        stat("Loudness range", full.loudness ? `${full.loudness.range_lu.toFixed(1)} LU` : null),
        stat("True peak", full.loudness?.true_peak_dbtp != null ? `${full.loudness.true_peak_dbtp.toFixed(1)} dBTP` : null),
        stat("Beats", full.beats ? String(full.beats.length) : null),
        stat("Time signature", full.time_signature)),
      full.sections ? (full.sections.length
        ? h("div", {}, h("h3", {}, "Sections"), h("ol", { class: "sections" }, full.sections.map((x) =>
          h("li", {}, h("strong", {}, x.label), ` from ${fmtDuration(x.start) === "–" ? "0:00" : fmtDuration(x.start)} (bar ${x.bar})`))))
        : h("p", { class: "muted" }, "No sections: the song is too short (they need at least 8 bars).")) : null,
      full.chords ? chordLane(full.chords) : null,
      full.key_changes ? (full.key_changes.length > 1
        ? h("div", {}, h("h3", {}, "Key changes"), h("ol", { class: "sections" }, full.key_changes.map((k) =>
          h("li", {}, h("strong", {}, k.key), ` (${k.camelot}) from ${k.start.toFixed(1)} s`))))
        : h("p", { class: "muted" }, full.key_changes.length ? `One key throughout: ${full.key_changes[0].key}.` : "No key changes: no key was found.")) : null,
      h("p", {}, h("a", { href: `/export/analysis/${track.id}`, download: "" }, "Download the analysis (JSON)"),
        full.beats?.length > 1 ? [" · ", h("a", { href: `/export/midi/${track.id}`, download: "" }, "Download the beat grid, chords and sections (MIDI)")] : null));
    const f = full.features || {};
    if (f.chroma) analysisBox.append(h("h3", {}, "Chroma"), heatmap(f.chroma, ["C", "C♯", "D", "D♯", "E", "F", "F♯", "G", "G♯", "A", "A♯", "B"], "Chroma heatmap: pitch classes over time"));
    if (f.mfcc) analysisBox.append(h("h3", {}, "MFCC"), heatmap(f.mfcc, null, "MFCC heatmap: 13 coefficients over time"));
    if (f.spectral_centroid && f.spectral_rolloff) {
      const el = h("div", { role: "img", "aria-label": "Spectral centroid and rolloff over time" });
      analysisBox.append(h("h3", {}, "Spectral centroid and rolloff"), el);
      dropPlot?.();
      dropPlot = linePlot(el, f.frame_rate, f.spectral_centroid, f.spectral_rolloff);
    }
    if (wf && full.beats) {
      // Beats as thin lines, bar starts darker, sections as labelled spans behind them.
      const bars = new Set(full.downbeats || []);
      const tint = { intro: "rgba(91,60,196,0.10)", build: "rgba(196,140,60,0.16)", drop: "rgba(196,60,122,0.16)",
        breakdown: "rgba(60,140,196,0.14)", outro: "rgba(91,60,196,0.10)" };
      const mark = () => {
        wf.regions.clearRegions();
        for (const x of full.sections || [])
          wf.regions.addRegion({ start: x.start, end: x.end, content: x.label, color: tint[x.label] || "rgba(0,0,0,0.06)", drag: false, resize: false });
        for (const b of full.beats)
          wf.regions.addRegion({ start: b, color: bars.has(b) ? "rgba(29,29,40,0.8)" : "rgba(29,29,40,0.3)", drag: false, resize: false });
      };
      wf.getDuration() ? mark() : wf.once("ready", mark);
    }
  }

  async function drawSeparations() {
    let jobs = [];
    try {
      jobs = (await get(`/api/jobs?track_id=${track.id}&type=processing&page_size=20`)).data;
    } catch (e) {
      replace(separations, h("h2", { id: "seps-title" }, "Separations"), h("p", { class: "error", role: "alert" }, errorText(e)));
      return;
    }
    replace(separations, h("h2", { id: "seps-title" }, "Separations"),
      jobs.length ? h("ul", {}, jobs.map((j) => h("li", {},
        h("span", { class: "badge" }, j.status), " ", new Date(j.created_at).toLocaleString(), " ",
        j.status === "completed" ? h("a", { href: `/export/stems/${track.id}?job_id=${j.id}`, download: "" }, "ZIP of these stems") : null,
        // NI Stems (Traktor, Mixxx) hold four stems: offered for four-stem separations.
        j.status === "completed" && j.result?.stems?.length === 4
          ? [" · ", h("a", { href: `/export/nistems/${track.id}?job_id=${j.id}`, download: "" }, "NI Stems (.stem.mp4)")] : null,
        j.error ? h("span", { class: "error" }, ` ${j.error}`) : null)))
        : h("p", {}, "No separations yet: choose a model and press “Separate stems”."),
      track.stems?.length ? h("p", {}, h("button", { type: "button", onclick: () => download(`/export/stems/${track.id}`) }, "Download all stems")) : null);
  }
}

// Starts a download of url (the server names the file) without leaving the page.
function download(url) {
  const a = h("a", { href: url, download: "" }, "download");
  document.body.append(a);
  a.click();
  a.remove();
}

// A rows x columns matrix as a heatmap: one pixel per cell, scaled by CSS.
function heatmap(rows, labels, name) {
  const n = rows.length, m = rows[0]?.length || 0;
  const c = h("canvas", { class: "heat", width: String(Math.max(1, m)), height: String(n), role: "img", "aria-label": name });
  c.style.height = `${n * 12}px`;
  if (!m) return c;
  let lo = Infinity, hi = -Infinity;
  for (const r of rows) for (const v of r) { lo = Math.min(lo, v); hi = Math.max(hi, v); }
  const g = c.getContext("2d");
  const img = g.createImageData(m, n);
  for (let i = 0; i < n; i++) {
    for (let t = 0; t < m; t++) {
      const x = hi > lo ? (rows[n - 1 - i][t] - lo) / (hi - lo) : 0;
      const p = 4 * (i * m + t);
      img.data[p] = Math.round(29 + x * (255 - 29));
      img.data[p + 1] = Math.round(29 + x * (191 - 29));
      img.data[p + 2] = Math.round(40 + x * (71 - 40) + (1 - x) * 120);
      img.data[p + 3] = 255;
    }
  }
  g.putImageData(img, 0, 0);
  return h("figure", { style: "margin:0" }, c, labels ? h("figcaption", { class: "muted" }, `Rows, bottom to top: ${labels.join(" ")}`) : null);
}

// Centroid and rolloff against time; the chart follows its box's width.
function linePlot(el, frameRate, centroid, rolloff) {
  const xs = centroid.map((_, i) => i / (frameRate || 1));
  el.classList.add("plot");
  const width = () => Math.max(200, el.clientWidth);
  const plot = new uPlot({ width: width(), height: 200, scales: { x: { time: false } },
    axes: [{ label: "seconds" }, { label: "Hz" }],
    series: [{ label: "Time (s)" }, { label: "Centroid", stroke: "#5b3cc4" }, { label: "Rolloff", stroke: "#c43c7a" }] },
  [xs, centroid, rolloff], el);
  const ro = new ResizeObserver(() => plot.setSize({ width: width(), height: 200 }));
  ro.observe(el);
  return () => { ro.disconnect(); plot.destroy(); };
}

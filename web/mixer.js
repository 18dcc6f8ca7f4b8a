// mixer.js - the stem mixer and DAW editor of a track page.
//
// One AudioContext at the stems' rate plays every stem: each lane is an AudioBufferSource
// -> gain (volume, mute, solo) -> balance (the export's pan law: L *= 1 - max(p, 0),
// R *= 1 + min(p, 0), as two gains) -> the master. Play starts every lane's source at the
// same context time and offset, so the stems stay sample-synchronous. A lane's buffer is
// its stem with the lane's edits applied by the rules of src/audio/mixer.h (trim, offset,
// region gain, silence, fades), so what plays is what "Export mix" renders on the server
// from the manifest this page shows. Mix settings and edits are kept per track in
// localStorage; every change is one step of undo/redo.

import WaveSurfer from "./vendor/wavesurfer.js";
import RegionsPlugin from "./vendor/wavesurfer-regions.js";
import { api } from "./api.js";
import { h, replace, notify, errorText, fmtDuration } from "./dom.js";

const RATE = 44100; // Demucs writes stems at 44.1 kHz
const EDIT_TYPES = {
  offset: ["position_ms"],
  trim: ["start_ms", "end_ms"],
  gain: ["start_ms", "end_ms", "level"],
  silence: ["start_ms", "end_ms"],
  fade_in: ["duration_ms"],
  fade_out: ["duration_ms"],
};
const FIELD_LABEL = { position_ms: "Position (s)", start_ms: "From (s)", end_ms: "To (s)", duration_ms: "Length (s)", level: "Level (×)" };

const frames = (ms) => Math.floor((ms * RATE) / 1000 + 0.5); // halves up, as the server

// The lane's clip after its edits: Float32 left/right of the whole lane timeline.
export function renderClip(left, right, edits) {
  const n = left.length;
  const mult = new Float32Array(n).fill(1);
  let start = 0, end = n, pos = 0;
  const range = (e) => {
    const s = Math.min(start + frames(e.start_ms || 0), end);
    const t = e.end_ms === undefined ? end : Math.min(start + frames(e.end_ms), end);
    return [s, Math.max(s, t)];
  };
  for (const e of edits) {
    if (e.type === "trim") {
      const [s, t] = range(e);
      start = s;
      end = t;
    } else if (e.type === "offset") {
      pos = frames(e.position_ms || 0);
    } else if (e.type === "gain" || e.type === "silence") {
      const [s, t] = range(e);
      const k = e.type === "gain" ? e.level : 0;
      for (let i = s; i < t; i++) mult[i] *= k;
    } else if (e.type === "fade_in") {
      const d = frames(e.duration_ms || 0);
      for (let i = 0; i < d && start + i < end; i++) mult[start + i] *= i / d;
    } else if (e.type === "fade_out") {
      const d = frames(e.duration_ms || 0);
      for (let k = 0; k < d && end - 1 - k >= start; k++) mult[end - 1 - k] *= k / d;
    }
  }
  const len = pos + (end - start);
  const L = new Float32Array(len), R = new Float32Array(len);
  for (let i = start; i < end; i++) {
    L[pos + i - start] = left[i] * mult[i];
    R[pos + i - start] = right[i] * mult[i];
  }
  return [L, R];
}

export class Mixer {
  constructor(box, ctx, track) {
    this.box = box;
    this.ctx = ctx;
    this.track = track;
    this.lanes = [];
    this.audio = null;
    this.playing = false;
    this.offset = 0; // seconds into the mix when paused
    this.loop = null; // {start, end} seconds, or null
    this.undoStack = [];
    this.redoStack = [];
    this.saved = JSON.parse(localStorage.getItem(this.key()) || "null") || { lanes: {}, bit_depth: 16, normalize: false };
    this.onKey = (e) => this.shortcut(e);
    document.addEventListener("keydown", this.onKey);
    replace(box, h("h2", { id: "mixer-title" }, "Stem mixer"), h("p", {}, "Separate the track to mix its stems here."));
  }

  key() {
    return `sfa.mix.${this.track.id}`;
  }

  destroy() {
    document.removeEventListener("keydown", this.onKey);
    this.stopSources();
    cancelAnimationFrame(this.raf);
    for (const l of this.lanes) l.ws?.destroy();
    this.audio?.close();
  }

  async load(stems) {
    this.stopSources();
    this.undoStack = []; // the steps were of the lanes being replaced
    this.redoStack = [];
    for (const l of this.lanes) l.ws?.destroy();
    this.lanes = [];
    if (!stems.length) return;
    replace(this.box, h("h2", { id: "mixer-title" }, "Stem mixer"), h("p", { class: "muted", role: "status" }, `Loading ${stems.length} stems…`));
    if (!this.audio) {
      this.audio = new AudioContext({ sampleRate: RATE, latencyHint: "playback" });
      this.master = this.audio.createGain();
      this.master.connect(this.audio.destination);
    }
    try {
      const decoded = await Promise.all(stems.map(async (s) => {
        const res = await api("GET", s.file_path, undefined, { raw: true });
        return this.audio.decodeAudioData(await res.arrayBuffer());
      }));
      this.lanes = stems.map((s, i) => this.lane(s, decoded[i]));
    } catch (e) {
      replace(this.box, h("h2", { id: "mixer-title" }, "Stem mixer"), h("p", { class: "error", role: "alert" }, `The stems could not be loaded: ${errorText(e)}`));
      return;
    }
    this.draw();
    for (const l of this.lanes) this.rebuild(l);
    this.applyGains();
  }

  lane(stem, buffer) {
    const name = stem.stem_type;
    const kept = this.saved.lanes[name] || {};
    const l = {
      stem, name, buffer,
      left: buffer.getChannelData(0),
      right: buffer.numberOfChannels > 1 ? buffer.getChannelData(1) : buffer.getChannelData(0),
      volume: kept.volume ?? 1, pan: kept.pan ?? 0, mute: !!kept.mute, solo: !!kept.solo, edits: kept.edits || [],
      gain: this.audio.createGain(), balL: this.audio.createGain(), balR: this.audio.createGain(),
    };
    const split = this.audio.createChannelSplitter(2), merge = this.audio.createChannelMerger(2);
    l.gain.connect(split);
    split.connect(l.balL, 0);
    split.connect(l.balR, 1);
    l.balL.connect(merge, 0, 0);
    l.balR.connect(merge, 0, 1);
    merge.connect(this.master);
    return l;
  }

  // The lane's playable buffer and waveform after its edits.
  rebuild(l) {
    const [L, R] = renderClip(l.left, l.right, l.edits);
    l.clip = this.audio.createBuffer(2, Math.max(1, L.length), RATE);
    l.clip.copyToChannel(L, 0);
    l.clip.copyToChannel(R, 1);
    const duration = l.clip.length / RATE;
    if (l.ws) l.ws.load("", [L], duration).catch(() => {});
    l.el.dataset.frames = String(l.clip.length);
    this.updateTime();
  }

  mixSeconds() {
    return Math.max(0, ...this.lanes.map((l) => (l.clip ? l.clip.length / RATE : 0)));
  }

  applyGains() {
    const anySolo = this.lanes.some((l) => l.solo);
    for (const l of this.lanes) {
      const audible = !l.mute && (!anySolo || l.solo);
      const g = audible ? l.volume : 0;
      l.gain.gain.setValueAtTime(g, this.audio.currentTime);
      l.balL.gain.setValueAtTime(1 - Math.max(l.pan, 0), this.audio.currentTime);
      l.balR.gain.setValueAtTime(1 + Math.min(l.pan, 0), this.audio.currentTime);
      // What the nodes were set to, for people and tests reading the page.
      l.el.dataset.gain = String(g);
      l.el.dataset.panLeft = String(1 - Math.max(l.pan, 0));
      l.el.dataset.panRight = String(1 + Math.min(l.pan, 0));
    }
  }

  save() {
    const lanes = {};
    for (const l of this.lanes) lanes[l.name] = { volume: l.volume, pan: l.pan, mute: l.mute, solo: l.solo, edits: l.edits };
    this.saved = { lanes, bit_depth: this.saved.bit_depth, normalize: this.saved.normalize };
    localStorage.setItem(this.key(), JSON.stringify(this.saved));
    this.showManifest();
  }

  snapshot() {
    return JSON.stringify(this.lanes.map((l) => ({ volume: l.volume, pan: l.pan, mute: l.mute, solo: l.solo, edits: l.edits })));
  }

  // Records the state before a change, so it can be undone.
  change(fn, { edits = false } = {}) {
    this.undoStack.push(this.snapshot());
    this.redoStack = [];
    fn();
    this.after(edits);
  }

  after(edits) {
    if (edits) for (const l of this.lanes) this.rebuild(l);
    this.applyGains();
    this.save();
    this.syncControls();
    if (edits && this.playing) this.play(this.position());
  }

  restore(snap) {
    JSON.parse(snap).forEach((s, i) => Object.assign(this.lanes[i], s));
    this.after(true);
  }

  undo() {
    if (!this.undoStack.length) return;
    this.redoStack.push(this.snapshot());
    this.restore(this.undoStack.pop());
  }

  redo() {
    if (!this.redoStack.length) return;
    this.undoStack.push(this.snapshot());
    this.restore(this.redoStack.pop());
  }

  manifest() {
    return {
      sample_rate: RATE, bit_depth: Number(this.saved.bit_depth), normalize: !!this.saved.normalize,
      stems: this.lanes.map((l) => ({ stem_id: l.stem.id, volume: l.volume, pan: l.pan, mute: l.mute, solo: l.solo, edits: l.edits })),
    };
  }

  // ---- transport ----

  position() {
    if (!this.playing) return this.offset;
    let t = this.offset + (this.audio.currentTime - this.startedAt);
    if (this.loop && t >= this.loop.end) t = this.loop.start + ((t - this.loop.start) % (this.loop.end - this.loop.start));
    return t;
  }

  stopSources() {
    for (const l of this.lanes) {
      if (l.source) {
        try { l.source.stop(); } catch { /* never started */ }
        l.source.disconnect();
        l.source = null;
      }
    }
  }

  async play(from = this.offset) {
    await this.audio.resume();
    this.stopSources();
    if (from >= this.mixSeconds()) from = 0;
    const when = this.audio.currentTime + 0.05;
    for (const l of this.lanes) {
      const s = this.audio.createBufferSource();
      s.buffer = l.clip;
      if (this.loop) {
        s.loop = true;
        s.loopStart = this.loop.start;
        s.loopEnd = this.loop.end;
      }
      s.connect(l.gain);
      s.start(when, Math.min(from, l.clip.duration));
      l.source = s;
    }
    this.offset = from;
    this.startedAt = when;
    this.playing = true;
    this.box.dataset.state = "playing";
    this.box.dataset.audioContext = this.audio.state;
    this.tick();
  }

  pause() {
    if (!this.playing) return;
    this.offset = this.position();
    this.stopSources();
    this.playing = false;
    this.box.dataset.state = "paused";
    this.updateTime();
  }

  seek(t) {
    t = Math.max(0, Math.min(t, this.mixSeconds()));
    if (this.playing) this.play(t);
    else {
      this.offset = t;
      this.updateTime();
    }
  }

  tick() {
    cancelAnimationFrame(this.raf);
    const step = () => {
      this.box.dataset.audioContext = this.audio.state;
      const t = this.position();
      if (!this.loop && t >= this.mixSeconds()) {
        this.pause();
        this.offset = 0;
        this.updateTime();
        return;
      }
      this.updateTime();
      if (this.playing) this.raf = requestAnimationFrame(step);
    };
    this.raf = requestAnimationFrame(step);
  }

  updateTime() {
    if (!this.timeEl) return;
    const t = this.position(), total = this.mixSeconds();
    this.timeEl.textContent = `${fmtDuration(t) === "–" ? "0:00" : fmtDuration(t)} / ${fmtDuration(total)}`;
    this.seekEl.max = String(total);
    this.seekEl.value = String(t);
    this.seekEl.setAttribute("aria-valuetext", `${t.toFixed(1)} seconds`);
    for (const l of this.lanes) {
      const d = l.clip ? l.clip.length / RATE : 0;
      if (l.ws && d) l.ws.seekTo(Math.min(1, t / d));
    }
  }

  shortcut(e) {
    const tag = e.target.tagName;
    if (["INPUT", "SELECT", "TEXTAREA"].includes(tag)) return; // their own keys, undo included
    if (e.ctrlKey || e.metaKey) {
      if (e.key === "z" && !e.shiftKey) { e.preventDefault(); this.undo(); }
      else if (e.key === "y" || (e.key === "z" && e.shiftKey) || e.key === "Z") { e.preventDefault(); this.redo(); }
      return;
    }
    if (!this.lanes.length) return;
    // (a focused button's own Space presses it)
    if (e.key === " " && tag !== "BUTTON") { e.preventDefault(); this.playing ? this.pause() : this.play(); }
    else if (e.key === "Home") { e.preventDefault(); this.seek(0); }
    else if (e.key === "l" || e.key === "L") this.toggleLoop();
    else if (e.key === "[" || e.key === "]") this.markLoop(e.key === "[" ? "start" : "end");
  }

  // The keyboard's way to choose the part to loop: [ and ] at the play position.
  markLoop(edge) {
    const t = this.position();
    const sel = { start: 0, end: this.mixSeconds(), ...this.selection, [edge]: t };
    if (sel.end <= sel.start) {
      notify(`The loop's end must come after its start (${sel.start.toFixed(2)} s).`, "error");
      return;
    }
    this.selection = sel;
    this.loopText.textContent = `Selection ${sel.start.toFixed(2)}–${sel.end.toFixed(2)} s`;
    if (this.loop) {
      this.loop = { ...sel };
      if (this.playing) this.play(this.position());
    }
  }

  toggleLoop() {
    if (this.loop) this.loop = null;
    else if (this.selection && this.selection.end > this.selection.start) this.loop = { ...this.selection };
    else {
      notify("Drag across a waveform (or press [ and ] while playing) to select the part to loop, then press Loop.", "info");
      return;
    }
    this.loopBtn.setAttribute("aria-pressed", String(!!this.loop));
    if (this.playing) this.play(this.loop ? this.loop.start : this.position());
  }

  // ---- drawing ----

  draw() {
    const play = h("button", { type: "button", onclick: () => this.play() }, "Play");
    const pause = h("button", { type: "button", class: "secondary", onclick: () => this.pause() }, "Pause");
    this.loopBtn = h("button", { type: "button", class: "secondary", "aria-pressed": "false", onclick: () => this.toggleLoop() }, "Loop");
    this.timeEl = h("span", { "aria-live": "off" });
    this.loopText = h("span", { class: "muted", role: "status" });
    this.seekEl = h("input", { type: "range", min: "0", step: "0.01", value: "0", "aria-label": "Position", style: "flex:1 1 12rem" });
    this.seekEl.addEventListener("input", () => this.seek(Number(this.seekEl.value)));
    const undo = h("button", { type: "button", class: "secondary", onclick: () => this.undo() }, "Undo");
    const redo = h("button", { type: "button", class: "secondary", onclick: () => this.redo() }, "Redo");
    const bits = h("select", { id: "mix-bits", "aria-label": "Bit depth", onchange: () => { this.saved.bit_depth = Number(bits.value); this.save(); } },
      [16, 24, 32].map((b) => h("option", { value: String(b), selected: Number(this.saved.bit_depth) === b }, b === 32 ? "32-bit float" : `${b}-bit`)));
    const norm = h("input", { type: "checkbox", id: "mix-normalize", checked: !!this.saved.normalize, onchange: () => { this.saved.normalize = norm.checked; this.save(); } });
    const exportBtn = h("button", { type: "button", onclick: () => this.exportMix(exportBtn) }, "Export mix");
    this.manifestEl = h("pre", { id: "manifest-json", tabindex: "0", "aria-label": "Manifest sent by Export mix" });
    replace(this.box,
      h("h2", { id: "mixer-title" }, "Stem mixer"),
      h("div", { class: "toolbar", role: "toolbar", "aria-label": "Transport" }, play, pause, this.loopBtn, this.seekEl, this.timeEl, this.loopText),
      h("p", { class: "muted" }, "Keys: Space play/pause · Home back to the start · [ and ] mark the selection's start and end at the play position · L loop the selection · Ctrl+Z / Ctrl+Y undo/redo. Or drag across a waveform to select a part."),
      this.lanes.map((l) => this.drawLane(l)),
      h("h3", {}, "Export"),
      h("div", { class: "toolbar" }, undo, redo,
        h("label", { for: "mix-bits", style: "margin:0" }, "Bit depth"), bits,
        h("label", { for: "mix-normalize", style: "margin:0" }, norm, " Normalise to -1 dBFS"), exportBtn),
      h("details", {}, h("summary", {}, "Manifest (JSON) — the exact request body's manifest, for API users"), this.manifestEl));
    this.box.dataset.state = "paused";
    this.box.dataset.audioContext = this.audio.state;
    this.syncControls();
    this.showManifest();
    this.updateTime();
  }

  drawLane(l) {
    const S = l.name;
    const vol = h("input", { type: "range", min: "0", max: "2", step: "0.01", value: String(l.volume), "aria-label": `${S} volume` });
    const pan = h("input", { type: "range", min: "-1", max: "1", step: "0.01", value: String(l.pan), "aria-label": `${S} pan` });
    vol.addEventListener("change", () => this.change(() => { l.volume = Number(vol.value); }));
    vol.addEventListener("input", () => { l.volume = Number(vol.value); this.applyGains(); });
    pan.addEventListener("change", () => this.change(() => { l.pan = Number(pan.value); }));
    pan.addEventListener("input", () => { l.pan = Number(pan.value); this.applyGains(); });
    const mute = h("button", { type: "button", class: "secondary", "aria-pressed": String(l.mute), onclick: () => this.change(() => { l.mute = !l.mute; }) }, `Mute ${S}`);
    const solo = h("button", { type: "button", class: "secondary", "aria-pressed": String(l.solo), onclick: () => this.change(() => { l.solo = !l.solo; }) }, `Solo ${S}`);
    const wave = h("div", { class: "lane-wave" });
    const editsEl = h("ul", { class: "edits", "aria-label": `${S} edits` });
    l.controls = { vol, pan, mute, solo, editsEl };
    l.el = h("div", { class: "lane", role: "group", "aria-label": `${S} lane`, dataset: { stem: S } },
      h("div", { class: "toolbar" }, h("strong", { style: "min-width:5rem" }, S),
        h("label", { style: "margin:0" }, "Vol"), vol, h("label", { style: "margin:0" }, "Pan"), pan, mute, solo,
        h("a", { href: `/export/stem/${l.stem.id}`, download: "" }, `Download ${S}`)),
      wave, this.editForm(l), editsEl);
    const regions = RegionsPlugin.create();
    l.ws = WaveSurfer.create({ container: wave, height: 56, waveColor: "#9a88e0", progressColor: "#5b3cc4", cursorColor: "#1d1d28",
      peaks: [l.left], duration: l.left.length / RATE, plugins: [regions] });
    l.ws.on("interaction", (t) => this.seek(t));
    regions.enableDragSelection({ color: "rgba(91,60,196,0.2)" });
    const select = (r) => {
      this.selection = { start: r.start, end: r.end };
      this.loopText.textContent = `Selection ${r.start.toFixed(2)}–${r.end.toFixed(2)} s`;
      this.fillSelection(l, r.start, r.end);
    };
    regions.on("region-created", (r) => {
      for (const other of regions.getRegions()) if (other !== r) other.remove();
      select(r);
    });
    regions.on("region-updated", select);
    return l.el;
  }

  editForm(l) {
    const S = l.name;
    const type = h("select", { "aria-label": `${S} edit type` }, Object.keys(EDIT_TYPES).map((t) => h("option", { value: t }, t.replace("_", " "))));
    const fields = {};
    const box = h("span", { class: "toolbar" });
    const drawFields = () => {
      replace(box, EDIT_TYPES[type.value].map((f) => {
        fields[f] = fields[f] || h("input", { type: "number", step: "0.01", min: f === "level" ? "0" : "0", max: f === "level" ? "4" : undefined, style: "width:6rem", "aria-label": `${S} ${FIELD_LABEL[f]}` });
        return h("label", { style: "margin:0;font-weight:400" }, `${FIELD_LABEL[f]} `, fields[f]);
      }));
    };
    type.addEventListener("change", drawFields);
    drawFields();
    l.editFields = fields;
    const add = h("button", { type: "button", class: "secondary", onclick: () => {
      const e = { type: type.value };
      for (const f of EDIT_TYPES[type.value]) {
        const v = fields[f].value;
        if (v === "") {
          if (f === "start_ms") continue;
          if (f === "end_ms") continue;
          notify(`${FIELD_LABEL[f]} is needed for a ${type.value.replace("_", " ")} edit.`, "error");
          return;
        }
        e[f] = f === "level" ? Number(v) : Math.round(Number(v) * 1000);
      }
      this.change(() => { l.edits = [...l.edits, e]; }, { edits: true });
    } }, `Add ${S} edit`);
    return h("div", { class: "toolbar" }, type, box, add);
  }

  fillSelection(l, start, end) {
    const f = l.editFields;
    if (f.start_ms) f.start_ms.value = start.toFixed(2);
    if (f.end_ms) f.end_ms.value = end.toFixed(2);
  }

  syncControls() {
    for (const l of this.lanes) {
      const c = l.controls;
      if (!c) continue;
      c.vol.value = String(l.volume);
      c.pan.value = String(l.pan);
      c.mute.setAttribute("aria-pressed", String(l.mute));
      c.solo.setAttribute("aria-pressed", String(l.solo));
      replace(c.editsEl, l.edits.map((e, i) => h("li", {},
        `${e.type.replace("_", " ")} ${EDIT_TYPES[e.type].filter((f) => e[f] !== undefined).map((f) => `${FIELD_LABEL[f]} ${f === "level" ? e[f] : (e[f] / 1000).toFixed(2)}`).join(", ")}`,
        h("button", { type: "button", class: "link", "aria-label": `Remove ${l.name} edit ${i + 1}`,
          onclick: () => this.change(() => { l.edits = l.edits.filter((_, k) => k !== i); }, { edits: true }) }, "×"))));
    }
  }

  showManifest() {
    if (this.manifestEl) this.manifestEl.textContent = JSON.stringify(this.manifest(), null, 2);
  }

  async exportMix(btn) {
    btn.disabled = true;
    const m = this.manifest();
    const form = new FormData();
    form.append("track_id", this.track.id);
    form.append("manifest", JSON.stringify(m));
    try {
      const res = await api("POST", "/api/daw/export", form, { raw: true });
      const blob = await res.blob();
      const url = URL.createObjectURL(blob);
      const a = h("a", { href: url, download: `${this.track.title} (mix).wav` }, "mix");
      document.body.append(a);
      a.click();
      a.remove();
      setTimeout(() => URL.revokeObjectURL(url), 60000);
      const clipped = res.headers.get("X-SFA-Clipped-Samples");
      notify(`Mix exported${clipped && clipped !== "0" ? ` (${clipped} samples clipped: lower the volumes or normalise)` : ""}.`, "ok");
    } catch (e) {
      notify(errorText(e), "error");
    } finally {
      btn.disabled = false;
    }
  }
}

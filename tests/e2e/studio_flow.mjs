// The studio in a real browser (Debian's Chromium through playwright-core), as a new user
// walks it: register, import (an audio file and a file that is not audio), sort the
// library, open the track, analyse (the chord lane, the MIDI export), separate with live progress in the Jobs region, play
// the stems in the mixer (the AudioContext runs; each stem's gain follows mute, solo and
// volume; a loop marked from the keyboard), edit in the DAW (fade, offset, undo, redo),
// reload (the mix is kept), export the mix (it equals the server's render of the manifest
// the page shows), download all stems, the jobs page's filters, a longer song's sections,
// delete the track.
// axe-core checks every page at 1440 px and 390 px; screenshots of each page are kept.
//
// Usage: node studio_flow.mjs BASE_URL AUDIO_FILE SHOTS_DIR SPOTIFY_TRACK_URL
// Prints one JSON line with what it saw; exits non-zero with a sentence on failure.
import { chromium } from "playwright-core";
import { readFileSync, writeFileSync, mkdirSync } from "node:fs";
import { createRequire } from "node:module";

const [base, audioFile, shots, spotifyUrl] = process.argv.slice(2);
const executablePath = process.env.SFA_CHROMIUM || "/usr/bin/chromium";
const require = createRequire(import.meta.url);
const axeSource = readFileSync(require.resolve("axe-core/axe.min.js"), "utf8");
const email = `studio-${Date.now()}@example.com`;
const password = "a studio password";
const seen = { pages: [], axe: {} };
mkdirSync(shots, { recursive: true });

function fail(msg) {
  throw new Error(msg);
}

let browser;
try {
  browser = await chromium.launch({ executablePath, args: ["--no-sandbox", "--autoplay-policy=no-user-gesture-required"] });
} catch (e) {
  console.error(`Chromium could not start from ${executablePath} (install Debian's chromium): ${e.message}`);
  process.exit(1);
}

const errors = [];
async function checkPage(page, name) {
  for (const width of [1440, 390]) {
    await page.setViewportSize({ width, height: 900 });
    await page.evaluate(axeSource);
    const res = await page.evaluate(() => window.axe.run(document, { resultTypes: ["violations"] }));
    const bad = res.violations.filter((v) => v.impact === "serious" || v.impact === "critical");
    seen.axe[`${name}@${width}`] = bad.length;
    if (bad.length)
      fail(`axe found ${bad.length} serious/critical violation(s) on ${name} at ${width} px: ` +
        bad.map((v) => `${v.id} (${v.nodes.slice(0, 3).map((n) => n.target.join(" ")).join("; ")})`).join(", "));
    const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
    if (overflow > 1) {
      // Name the outermost elements that stick out, so the failure says where to look.
      const wide = await page.evaluate(() => [...document.querySelectorAll("body *")]
        .filter((e) => e.getBoundingClientRect().right > window.innerWidth + 1 && !(e.parentElement?.getBoundingClientRect().right > window.innerWidth + 1))
        .slice(0, 3).map((e) => `${e.tagName.toLowerCase()}${e.id ? `#${e.id}` : ""}${e.className ? `.${String(e.className).split(" ").join(".")}` : ""}`));
      fail(`${name} is ${overflow} px wider than a ${width} px screen (${wide.join(", ")})`);
    }
    await page.screenshot({ path: `${shots}/${name}-${width}.png`, fullPage: true });
  }
  await page.setViewportSize({ width: 1440, height: 900 });
  seen.pages.push(name);
}

try {
  const context = await browser.newContext({ acceptDownloads: true, viewport: { width: 1440, height: 900 } });
  const page = await context.newPage();
  page.on("console", (m) => m.type() === "error" && errors.push(m.text()));
  page.on("pageerror", (e) => errors.push(e.message));
  page.on("dialog", (d) => d.accept());

  // Register: the studio opens on the empty library.
  await page.goto(`${base}/users/log-in`);
  await checkPage(page, "log-in");
  await page.goto(`${base}/users/register`);
  await checkPage(page, "register");
  await page.fill("#user_email", email);
  await page.fill("#user_password", password);
  await Promise.all([page.waitForURL(`${base}/`), page.click("button[type=submit]")]);
  await page.getByText("Your library is empty").waitFor();
  await page.getByRole("region", { name: "Jobs" }).waitFor();
  await checkPage(page, "library-empty");

  // Import: one real file, one that is not audio (its error is the server's sentence).
  await page.getByRole("link", { name: "Import", exact: true }).click();
  await page.getByLabel("Upload audio files").setInputFiles([
    { name: audioFile.split("/").pop(), mimeType: "audio/wav", buffer: readFileSync(audioFile) },
    { name: "notes.mp3", mimeType: "audio/mpeg", buffer: Buffer.from("these are not audio bytes".repeat(40)) }]);
  const added = page.locator(".uploads li", { hasText: "added:" });
  await added.waitFor();
  const refused = page.locator(".uploads li", { hasText: "notes.mp3" }).locator("[role=alert]");
  await refused.waitFor();
  seen.upload_error = (await refused.textContent()).trim();
  if (seen.upload_error.length < 20) fail(`the refused upload shows no sentence: "${seen.upload_error}"`);
  // A Spotify link: what was found, then its download at a chosen quality.
  await page.getByLabel("Spotify link").fill(spotifyUrl);
  await page.getByRole("button", { name: "Fetch" }).click();
  await page.getByText("now in your library").waitFor();
  await page.getByRole("link", { name: "Song Studio" }).waitFor();
  await page.getByLabel("Quality").selectOption("high");
  await page.getByRole("button", { name: "Download", exact: true }).click();
  await page.getByText("Download finished for “Song Studio”").waitFor({ timeout: 60000 });
  await checkPage(page, "import");

  // Library lists the tracks; several can be analysed at once; a grid view; the title
  // links to the track's page.
  await page.getByRole("link", { name: "Library" }).click();
  const title = audioFile.split("/").pop().replace(/\.[^.]+$/, "");
  await page.getByRole("checkbox", { name: `Select ${title}` }).check();
  await page.getByRole("checkbox", { name: "Select Song Studio" }).check();
  // The selection goes to Rekordbox as a collection of those two tracks.
  const rbHref = await page.getByRole("link", { name: "Rekordbox XML of these" }).getAttribute("href");
  const rb = await page.request.get(`${base}${rbHref}`);
  if (rb.status() !== 200) fail(`the Rekordbox export of the selection: ${rb.status()} ${await rb.text()}`);
  if (!(await rb.text()).includes('<COLLECTION Entries="2">')) fail("the Rekordbox export does not hold the two selected tracks");
  // The server sorts the whole library (not only the page shown).
  const firstTitle = async () => (await page.locator("tbody tr a").first().textContent()).trim();
  await page.getByLabel("Sort", { exact: true }).selectOption("oldest");
  await page.waitForFunction((t) => document.querySelector("tbody tr a")?.textContent.trim() === t, title);
  await page.getByLabel("Sort", { exact: true }).selectOption("title");
  await page.waitForFunction(() => document.querySelector("tbody tr a")?.textContent.trim() === "Song Studio");
  seen.sorted_first = await firstTitle();
  await page.getByRole("button", { name: "Analyze selected" }).click();
  await page.getByText("Analyze: 2 track(s) done.").waitFor();
  await page.getByRole("button", { name: "Grid view" }).click();
  await page.locator(".tracks-grid").waitFor();
  await checkPage(page, "library-grid");
  await page.getByRole("button", { name: "Grid view" }).click();
  await page.getByRole("link", { name: title }).click();
  await page.getByRole("button", { name: "Analyze" }).waitFor();
  await checkPage(page, "track-new");

  // Record every progress bar the Jobs region shows, however briefly.
  await page.evaluate(() => {
    window.__progress = [];
    const jobs = document.getElementById("jobs");
    new MutationObserver(() => {
      for (const b of jobs.querySelectorAll("[role=progressbar]"))
        window.__progress.push({ label: b.getAttribute("aria-label"), now: Number(b.getAttribute("aria-valuenow")) });
    }).observe(jobs, { childList: true, subtree: true, attributes: true });
  });

  await page.getByRole("button", { name: "Analyze" }).click();
  await page.locator(".stat", { hasText: "Tempo" }).locator("b", { hasText: "BPM" }).waitFor({ timeout: 60000 });
  await page.locator(".stat", { hasText: "Tempo confidence" }).locator("b", { hasText: /^\d{1,3} %$/ }).waitFor();
  await page.getByRole("img", { name: /Chroma heatmap/ }).waitFor();
  await page.locator(".stat", { hasText: "Loudness" }).locator("b", { hasText: "LUFS" }).waitFor();
  await page.locator(".stat", { hasText: "True peak" }).locator("b", { hasText: "dBTP" }).waitFor();
  await page.locator(".stat", { hasText: "Time signature" }).locator("b", { hasText: /^[34]\/4$/ }).waitFor();
  await page.getByText("No sections: the song is too short").waitFor(); // 6 s: three bars
  // The chord lane shows the analysis's chords in order; the MIDI link gives a format-1 SMF.
  const lane = page.getByRole("list", { name: "Chords over time" });
  await lane.waitFor();
  const analysed = (await (await page.request.get(`${base}/export/analysis/${page.url().split("/").pop()}`)).json()).analysis;
  if (!analysed.chords?.length) fail(`the analysis has no chords: ${JSON.stringify(analysed.chords)}`);
  const laneLabels = await lane.locator("li .chord").allTextContents();
  if (JSON.stringify(laneLabels) !== JSON.stringify(analysed.chords.map((c) => c.label)))
    fail(`the chord lane shows ${JSON.stringify(laneLabels)}, the analysis ${JSON.stringify(analysed.chords.map((c) => c.label))}`);
  const midiHref = await page.getByRole("link", { name: /chords and sections \(MIDI\)/ }).getAttribute("href");
  const midi = await page.request.get(`${base}${midiHref}`);
  const smf = await midi.body();
  if (midi.status() !== 200 || smf.subarray(0, 4).toString("latin1") !== "MThd" || smf.readUInt16BE(8) !== 1 || smf.readUInt16BE(10) !== 2)
    fail(`the MIDI export: ${midi.status()}, ${smf.subarray(0, 14).toString("hex")}`);
  seen.chords = laneLabels;
  // Key changes: the stretches in one key, or the one key throughout.
  if (!analysed.key_changes) fail("the analysis has no key_changes");
  if (analysed.key_changes.length > 1) {
    const shown = await page.getByRole("heading", { name: "Key changes" }).locator("xpath=..").locator("li strong").allTextContents();
    if (JSON.stringify(shown) !== JSON.stringify(analysed.key_changes.map((k) => k.key))) fail(`key changes shown ${JSON.stringify(shown)}`);
  } else {
    await page.getByText(analysed.key_changes.length ? `One key throughout: ${analysed.key_changes[0].key}.` : "No key changes: no key was found.").waitFor();
  }

  await page.getByLabel("Model", { exact: true }).selectOption("htdemucs");
  await page.getByLabel("Engine", { exact: true }).selectOption("local");
  await page.getByLabel("Output format", { exact: true }).selectOption("wav");
  await page.getByRole("button", { name: "Separate stems" }).click();
  await page.getByRole("slider", { name: "drums volume" }).waitFor({ timeout: 90000 });
  seen.progress = await page.evaluate(() => window.__progress);
  if (!seen.progress.some((p) => /Separation/.test(p.label)))
    fail(`the Jobs region never showed the separation's progress bar: ${JSON.stringify(seen.progress)}`);
  if (!seen.progress.every((p) => p.now >= 0 && p.now <= 100)) fail("a progress bar left 0..100");
  await page.getByText("Separation finished").first().waitFor();
  await checkPage(page, "track-separated");
  // The four-stem separation is offered as NI Stems for Traktor.
  const niHref = await page.getByRole("link", { name: "NI Stems (.stem.mp4)" }).first().getAttribute("href");
  const ni = await page.request.get(`${base}${niHref}`);
  if (ni.status() !== 200 || ni.headers()["content-type"] !== "audio/mp4") fail(`NI Stems: ${ni.status()} ${ni.headers()["content-type"]}`);

  // A copy two semitones up renders as a new track of the library, stems and all.
  await page.getByLabel("Semitones", { exact: true }).fill("2");
  await page.getByRole("button", { name: "Render shifted copy" }).click();
  await page.getByText(/is being rendered; it is in your library/).waitFor();
  await page.getByText("Render finished").first().waitFor({ timeout: 90000 });

  // Mixer: play; the AudioContext runs; gains follow mute, solo and volume.
  const mixer = page.locator("section", { has: page.locator("#mixer-title") });
  const gain = async (s) => Number(await page.locator(`.lane[data-stem="${s}"]`).getAttribute("data-gain"));
  await page.getByRole("button", { name: "Play" }).click();
  await page.waitForFunction(() => document.querySelector("[data-audio-context]")?.dataset.audioContext === "running");
  seen.audio_context = await mixer.getAttribute("data-audio-context");
  await page.getByRole("button", { name: "Mute drums" }).click();
  if ((await gain("drums")) !== 0) fail("muting drums left its gain up");
  if ((await page.getByRole("button", { name: "Mute drums" }).getAttribute("aria-pressed")) !== "true") fail("Mute drums is not pressed");
  await page.getByRole("slider", { name: "bass volume" }).fill("0.5");
  if ((await gain("bass")) !== 0.5) fail(`bass gain ${await gain("bass")} after setting its volume to 0.5`);
  await page.getByRole("button", { name: "Solo vocals" }).click();
  const soloGains = { drums: await gain("drums"), bass: await gain("bass"), other: await gain("other"), vocals: await gain("vocals") };
  if (soloGains.bass !== 0 || soloGains.other !== 0 || soloGains.vocals !== 1) fail(`solo vocals gave gains ${JSON.stringify(soloGains)}`);
  await page.getByRole("button", { name: "Solo vocals" }).click();
  await page.getByRole("button", { name: "Mute drums" }).click();
  if ((await gain("bass")) !== 0.5 || (await gain("drums")) !== 1) fail("gains did not come back after unsolo and unmute");
  await page.getByRole("slider", { name: "vocals pan" }).fill("-0.5");
  if (Number(await page.locator('.lane[data-stem="vocals"]').getAttribute("data-pan-right")) !== 0.5) fail("pan -0.5 did not halve the right channel");
  await page.getByRole("button", { name: "Pause" }).click();
  seen.gains = soloGains;
  // The loop from the keyboard: [ and ] at the play position, then L.
  const seekTo = async (t) => page.getByRole("slider", { name: "Position" }).fill(String(t));
  await seekTo(1);
  await page.getByRole("button", { name: "Play" }).focus();
  await page.keyboard.press("[");
  await seekTo(2.5);
  await page.getByRole("button", { name: "Play" }).focus();
  await page.keyboard.press("]");
  await page.getByText("Selection 1.00–2.50 s").waitFor();
  await page.keyboard.press("l");
  if ((await page.getByRole("button", { name: "Loop" }).getAttribute("aria-pressed")) !== "true") fail("L did not turn the loop on");
  await page.keyboard.press("l");

  // DAW edits with undo/redo; the manifest on the page follows.
  await page.getByLabel("vocals edit type").selectOption("fade_in");
  await page.getByLabel("vocals Length (s)").fill("0.5");
  await page.getByRole("button", { name: "Add vocals edit" }).click();
  await page.getByLabel("vocals edit type").selectOption("offset");
  await page.getByLabel("vocals Position (s)").fill("0.25");
  await page.getByRole("button", { name: "Add vocals edit" }).click();
  const vocalEdits = async () => JSON.parse(await page.locator("#manifest-json").textContent()).stems.find((s) => s.edits.length || s.pan)?.edits || [];
  if ((await vocalEdits()).length !== 2) fail(`two edits expected, the manifest has ${JSON.stringify(await vocalEdits())}`);
  await page.getByRole("button", { name: "Undo" }).click();
  if ((await vocalEdits()).length !== 1) fail("undo did not remove the offset");
  await page.getByRole("button", { name: "Redo" }).click();
  const edits = await vocalEdits();
  if (JSON.stringify(edits) !== JSON.stringify([{ type: "fade_in", duration_ms: 500 }, { type: "offset", position_ms: 250 }]))
    fail(`edits after redo: ${JSON.stringify(edits)}`);
  await page.getByLabel("Bit depth").selectOption("24");
  await checkPage(page, "mixer-edited");
  // The mix settings and edits are kept for the track: a reload brings back the same mix.
  const beforeReload = await page.locator("#manifest-json").textContent();
  await page.reload();
  await page.getByRole("slider", { name: "drums volume" }).waitFor({ timeout: 60000 });
  if ((await page.locator("#manifest-json").textContent()) !== beforeReload) fail("the mix was not kept across a reload");
  if ((await page.getByRole("slider", { name: "bass volume" }).inputValue()) !== "0.5") fail("the bass volume was not kept across a reload");

  // Export: the downloaded WAV equals the server's render of the manifest shown.
  const manifestText = await page.locator("#manifest-json").textContent();
  const [download] = await Promise.all([page.waitForEvent("download"), page.getByRole("button", { name: "Export mix" }).click()]);
  const mixPath = `${shots}/mix.wav`;
  await download.saveAs(mixPath);
  const mix = readFileSync(mixPath);
  const trackId = page.url().split("/").pop();
  const csrf = await page.locator('meta[name="csrf-token"]').getAttribute("content");
  const direct = await page.request.post(`${base}/api/daw/export`, {
    headers: { "x-csrf-token": csrf },
    multipart: { track_id: trackId, manifest: JSON.stringify(JSON.parse(manifestText)) },
  });
  if (direct.status() !== 200) fail(`the server refused the page's manifest: ${direct.status()} ${await direct.text()}`);
  const want = await direct.body();
  if (!mix.equals(want)) fail(`the exported mix (${mix.length} B) differs from the server's render of the manifest (${want.length} B)`);
  if (mix.readUInt16LE(34) !== 24) fail(`the mix is ${mix.readUInt16LE(34)}-bit, 24 chosen`);
  seen.mix_bytes = mix.length;
  writeFileSync(`${shots}/manifest.json`, manifestText);

  // All stems as a ZIP.
  const [zip] = await Promise.all([page.waitForEvent("download"), page.getByRole("button", { name: "Download all stems" }).click()]);
  const zipPath = `${shots}/stems.zip`;
  await zip.saveAs(zipPath);
  const z = readFileSync(zipPath);
  if (z.readUInt32LE(0) !== 0x04034b50) fail("Download all stems did not give a ZIP");
  seen.zip_bytes = z.length;

  // Models, Jobs and Settings pages.
  await page.getByRole("link", { name: "Models" }).click();
  await page.getByText("sfa models fetch htdemucs_ft").waitFor();
  await checkPage(page, "models");
  await page.getByRole("link", { name: "Jobs", exact: true }).click();
  await page.getByRole("heading", { name: "Jobs", level: 1 }).waitFor();
  // Every job, filtered: the separation is listed with its track; no download failed.
  await page.getByLabel("Type", { exact: true }).selectOption("processing");
  const jobList = page.getByRole("region", { name: "Job list" });
  // The filtered page replaces the whole list once the server answers: wait for that.
  await page.waitForFunction(() => {
    const rows = [...document.querySelectorAll('[aria-label="Job list"] tbody tr')];
    return rows.length > 0 && rows.every((r) => r.textContent.includes("Separation"));
  });
  await jobList.getByRole("link", { name: title, exact: true }).first().waitFor();
  await page.getByLabel("Type", { exact: true }).selectOption("download");
  await page.getByLabel("Status", { exact: true }).selectOption("failed");
  await page.getByText("No job matches these filters.").waitFor();
  await page.getByLabel("Status", { exact: true }).selectOption("");
  await jobList.getByRole("link", { name: "Song Studio", exact: true }).first().waitFor();
  await checkPage(page, "jobs");
  await page.getByRole("link", { name: "Settings" }).click();
  await page.getByRole("button", { name: "Create API key" }).waitFor();
  await checkPage(page, "settings");

  // A song long enough for sections (the Spotify download, a 15 s breakbeat of 8 bars and
  // more, analysed with the selection): its page lists them as the analysis has them.
  await page.getByRole("link", { name: "Library" }).click();
  await page.getByRole("link", { name: "Song Studio", exact: true }).click();
  const sectionsHeading = page.getByRole("heading", { name: "Sections" });
  await sectionsHeading.waitFor();
  const studioId = page.url().split("/").pop();
  const studioSong = (await (await page.request.get(`${base}/export/analysis/${studioId}`)).json()).analysis;
  if (!studioSong.sections?.length) fail(`the 15 s song has no sections: ${JSON.stringify(studioSong.sections)}`);
  const sectionItems = sectionsHeading.locator("xpath=..").locator("li");
  const shownLabels = await sectionItems.locator("strong").allTextContents();
  const shownBars = (await sectionItems.allTextContents()).map((t) => Number(/\(bar (\d+)\)$/.exec(t)?.[1]));
  if (JSON.stringify(shownLabels) !== JSON.stringify(studioSong.sections.map((x) => x.label)) ||
      JSON.stringify(shownBars) !== JSON.stringify(studioSong.sections.map((x) => x.bar)))
    fail(`sections shown ${JSON.stringify(shownLabels)} at bars ${JSON.stringify(shownBars)}, the analysis ${JSON.stringify(studioSong.sections)}`);
  seen.sections = shownLabels;
  await checkPage(page, "track-sections");

  // Delete the track from its page: back to an empty library.
  await page.goto(`${base}/tracks/${trackId}`);
  await page.getByRole("button", { name: "Delete track" }).click();
  await page.getByRole("link", { name: "Song Studio" }).waitFor();
  if (await page.getByRole("link", { name: title, exact: true }).count()) fail("the deleted track is still listed");
  await page.getByRole("link", { name: `${title} (+2 st)`, exact: true }).waitFor(); // its copy stays
  const gone = await page.request.get(`${base}/api/tracks/${trackId}`);
  if (gone.status() !== 404) fail(`the deleted track still answers ${gone.status()}`);

  // The browser's own lines for refused requests (the 422 of the file that is not audio)
  // and for the fake Spotify's album art on Spotify's image host, which this sandbox
  // cannot reach, are not the app's errors.
  const real = errors.filter((e) => !/Failed to load resource: (the server responded with a status of 4\d\d|net::ERR_NAME_NOT_RESOLVED)/.test(e));
  if (real.length) fail(`the pages logged errors: ${real.join("; ")}`);
  seen.refused_resources = errors.length - real.length;
  console.log(JSON.stringify(seen));
} catch (e) {
  console.error(e.message);
  process.exitCode = 1;
} finally {
  await browser.close();
}

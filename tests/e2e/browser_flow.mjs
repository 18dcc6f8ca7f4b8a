// A new user's first minutes, in a real browser (Debian's Chromium through
// playwright-core): register, see the home page, open settings, create an API key, and
// use that key against /api/me. Usage: node browser_flow.mjs BASE_URL [SCREENSHOT_DIR]
// Prints one JSON line with what it saw; exits non-zero with a sentence on failure.
import { chromium } from "playwright-core";

const base = process.argv[2];
const shots = process.argv[3];
const executablePath = process.env.SFA_CHROMIUM || "/usr/bin/chromium";
const email = `browser-${Date.now()}@example.com`;
const password = "a browser password";

function fail(msg) {
  console.error(msg);
  process.exit(1);
}

let browser;
try {
  browser = await chromium.launch({ executablePath, args: ["--no-sandbox"] });
} catch (e) {
  fail(`Chromium could not start from ${executablePath} (install Debian's chromium): ${e.message}`);
}
try {
  const page = await browser.newPage();
  const errors = [];
  page.on("console", (m) => m.type() === "error" && errors.push(m.text()));

  await page.goto(`${base}/`);
  await page.click("text=Register");
  await page.fill("#user_email", email);
  await page.fill("#user_password", password);
  await Promise.all([page.waitForURL(`${base}/`), page.click("button[type=submit]")]);
  const home = await page.textContent("header");
  if (!home.includes(email)) fail(`the studio's header does not name ${email}: ${home}`);
  await page.getByRole("region", { name: "Jobs" }).waitFor();
  if (shots) await page.screenshot({ path: `${shots}/home.png`, fullPage: true });

  await page.click("text=Settings");
  await page.fill("#key_name", "from the browser");
  await page.click("text=Create API key");
  const key = (await page.textContent("#new-api-key")).trim();
  if (!/^sfa_[A-Za-z0-9_-]{43}$/.test(key)) fail(`no API key shown after creating one: ${key}`);
  if (shots) await page.screenshot({ path: `${shots}/settings.png`, fullPage: true });

  const me = await fetch(`${base}/api/me`, { headers: { Authorization: `Bearer ${key}` } });
  const body = await me.json();
  if (me.status !== 200 || body.data.email !== email)
    fail(`/api/me with the new key answered ${me.status} ${JSON.stringify(body)}`);

  await page.click("text=Log out");
  await page.waitForURL(`${base}/`);
  const after = await page.textContent("header");
  if (!after.includes("Log in")) fail(`after logging out the header still reads: ${after}`);
  if (errors.length) fail(`the pages logged errors: ${errors.join("; ")}`);
  console.log(JSON.stringify({ email, key_prefix: key.slice(0, 12), me_status: me.status }));
} finally {
  await browser.close();
}

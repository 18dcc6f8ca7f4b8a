// Opens the library page five times (a fresh browser context each time, so nothing is
// cached) and measures from navigation start to the first track link being in the page
// (recorded in the page by a MutationObserver, so the test client's polling adds nothing).
// Usage: node library_load.mjs BASE_URL EMAIL PASSWORD. Prints {"interactive_ms": [...]}.
import { chromium } from "playwright-core";

const [base, email, password] = process.argv.slice(2);
const browser = await chromium.launch({ executablePath: process.env.SFA_CHROMIUM || "/usr/bin/chromium", args: ["--no-sandbox"] });
const out = { interactive_ms: [] };
try {
  for (let i = 0; i < 5; i++) {
    const context = await browser.newContext();
    const page = await context.newPage();
    await page.addInitScript(() => {
      new MutationObserver((_, obs) => {
        if (document.querySelector('#view a[href^="/tracks/"]')) {
          window.__interactive = performance.now();
          obs.disconnect();
        }
      }).observe(document, { childList: true, subtree: true });
    });
    await page.goto(`${base}/users/log-in`);
    await page.fill("#user_email", email);
    await page.fill("#user_password", password);
    await Promise.all([page.waitForURL(`${base}/`), page.click("button[type=submit]")]);
    await page.goto(`${base}/`);
    await page.getByRole("link", { name: /^Track \d+$/ }).first().waitFor();
    const ms = await page.evaluate(() => window.__interactive);
    out.interactive_ms.push(ms);
    await context.close();
  }
} finally {
  await browser.close();
}
console.log(JSON.stringify(out));

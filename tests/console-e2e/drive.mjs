// Drives the office console in headless Chromium over real nodes
// (tests/integration/console.rs starts them and passes a JSON config as the
// first argument): intake and push at the acceptance office's console, the
// initial review, the county re-review and the decision at the domicile
// offices' consoles, and the result arriving back at the acceptance console.
// Every page is audited with axe-core (WCAG 2.1 A and AA); a serious or
// critical finding fails the run. With `screenshots` set, each page is saved
// there as PNG. Prints one JSON line with what it saw.

import { readFileSync, writeFileSync, mkdtempSync } from "node:fs";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { chromium } from "playwright-core";

const require = createRequire(import.meta.url);
const AXE = readFileSync(require.resolve("axe-core/axe.min.js"), "utf8");
const config = JSON.parse(readFileSync(process.argv[2], "utf8"));
const STEP_TIMEOUT = 45_000;

const findings = [];
const audited = [];
const shots = [];

function fail(message) {
  throw new Error(message);
}

async function audit(page, name) {
  await page.addScriptTag({ content: AXE });
  const result = await page.evaluate(async () =>
    // eslint-disable-next-line no-undef
    axe.run(document, {
      runOnly: { type: "tag", values: ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "best-practice"] },
    })
  );
  audited.push({ page: name, rules_passed: result.passes.length, violations: result.violations.length });
  for (const v of result.violations) {
    findings.push({
      page: name,
      id: v.id,
      impact: v.impact,
      help: v.help,
      nodes: v.nodes.slice(0, 3).map((n) => n.target.join(" ")),
    });
  }
}

async function shot(page, name) {
  if (!config.screenshots) return;
  const file = join(config.screenshots, `${name}.png`);
  await page.screenshot({ path: file, fullPage: true });
  shots.push(file);
}

/// Audits and (when asked) photographs the page as it is now.
async function look(page, name) {
  await audit(page, name);
  await shot(page, name);
}

async function signIn(page, base, user, password) {
  await page.goto(base + "/login");
  await page.fill("#name", user);
  await page.fill("#password", password);
  await Promise.all([page.waitForURL(base + "/"), page.click("button.primary")]);
}

/// Reloads `url` until `predicate(page)` holds: sync takes a moment.
async function until(page, url, what, predicate) {
  const start = Date.now();
  for (;;) {
    await page.goto(url);
    if (await predicate(page)) return;
    if (Date.now() - start > STEP_TIMEOUT) fail(`timed out waiting for ${what}`);
    await page.waitForTimeout(300);
  }
}

async function act(page, code, opinion, extra) {
  const form = page.locator(`form.action:has(input[name=to][value=${code}])`);
  if ((await form.count()) !== 1) fail(`no action ${code} on ${page.url()}`);
  if (opinion !== undefined) await form.locator("textarea[name=opinion]").fill(opinion);
  if (extra) await extra(form);
  await Promise.all([page.waitForNavigation(), form.locator("button[type=submit]").click()]);
  const flash = (await page.locator(".flash").count()) ? await page.textContent(".flash") : "";
  if (!flash.includes("已签署")) fail(`${code} not signed: ${flash || (await page.textContent("body"))}`);
}

async function actions(page) {
  return page.$$eval("form.action input[name=to]", (inputs) => inputs.map((i) => i.value));
}

async function stageOf(page) {
  return page.textContent("dl.facts dd .stage .code");
}

// A small valid PNG standing in for a scan: a page with a few ruled lines.
const PNG = Buffer.from(
  "iVBORw0KGgoAAAANSUhEUgAAAGAAAABACAAAAADAXy3SAAAAV0lEQVR42u3YQQ0AIQwEwApDGEowiQnIKbgHhRBmBXQem/00+kzrKfnOxv1AS07oALAOKIuzH7i/g/o7gCzAkh8YGgBgyToAACxZyQCAJQMADwAes8eBAQRyDKloGsa+AAAAAElFTkSuQmCC",
  "base64"
);

// A fresh profile each run (playwright passes it as --user-data-dir).
const context = await chromium.launchPersistentContext(mkdtempSync(join(tmpdir(), "tongban-chromium-")), {
  executablePath: config.chromium,
  headless: true,
  bypassCSP: true, // for axe-core's injected script only
  viewport: { width: 1280, height: 900 },
  locale: "zh-CN",
  args: [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
  ],
});
const scans = mkdtempSync(join(tmpdir(), "tongban-scans-"));
const outcome = {};
try {
  const { acceptance, domicile, dpf, civil } = config.consoles;

  // ---- the acceptance office's window ----
  const win = await context.newPage();
  await win.goto(acceptance.url + "/login");
  await look(win, "login");
  await signIn(win, acceptance.url, acceptance.user, config.password);
  await look(win, "queue-empty");

  // A wrong resident ID is refused, naming the field, and nothing is stored.
  await win.goto(acceptance.url + "/intake");
  await look(win, "intake");
  await win.fill("#name", config.applicant.name);
  await win.fill("#resident_id", config.applicant.resident_id.slice(0, 17) + "0");
  await win.fill("#hukou_township", config.applicant.hukou);
  await win.fill("#phone", "13800000000");
  await win.fill("#address", "河北省石家庄市长安区");
  await win.check("#kind-living");
  await win.check("#dibao");
  await Promise.all([win.waitForLoadState("load"), win.click("#intake-form button.primary")]);
  const summary = await win.textContent("#error-summary");
  if (!summary.includes("公民身份号码")) fail(`the error does not name the field: ${summary}`);
  outcome.intake_error = summary.replace(/\s+/g, " ").trim();
  await look(win, "intake-errors");

  // Live validation: the console answers with the node's own rule.
  await win.fill("#resident_id", "");
  await win.type("#resident_id", config.applicant.resident_id);
  await win.waitForSelector("#resident_id-live.ok", { timeout: 30_000 });
  // The township from the division table's picker, level by level.
  try {
    for (const [n, code] of [[1, "13"], [2, "1301"], [3, "130102"], [4, "130102001"]]) {
      await win.waitForSelector(`#pick-${n} option[value="${code}"]`, { state: "attached", timeout: 15_000 });
      await win.selectOption(`#pick-${n}`, code);
    }
    outcome.picker = await win.inputValue("#hukou_township");
  } catch (err) {
    outcome.picker = `not used: ${err.message.split("\n")[0]}`;
    await win.fill("#hukou_township", config.applicant.hukou);
  }
  await win.waitForSelector("#hukou_township-live.ok", { timeout: 30_000 });
  await win.fill("#certificate", config.applicant.certificate);
  await win.waitForSelector("#certificate-live.ok", { timeout: 30_000 });
  // The one-time notice, previewed from the domicile's policy before the case starts.
  await win.waitForSelector("#preview-list li", { timeout: 30_000 });
  outcome.notice_preview = await win.locator("#preview-list li").count();
  await look(win, "intake-filled");
  await Promise.all([win.waitForURL(/\/cases\//), win.click("#intake-form button.primary")]);
  const caseId = win.url().split("/cases/")[1];
  outcome.case_id = caseId;
  await look(win, "case-draft");

  // The printable one-time notice.
  await win.goto(`${acceptance.url}/cases/${caseId}/notice`);
  await look(win, "notice");
  await win.goto(`${acceptance.url}/cases/${caseId}`);

  // Scans, one for each item of the notice, with the upload's progress.
  let uploads = 0;
  for (;;) {
    const missing = await win.locator(".checklist .tag.warn").count();
    if (missing === 0) break;
    if (uploads > 10) fail("uploads do not complete the notice");
    const kind = await win.$eval("#kind", (s) => s.value);
    const file = join(scans, `${kind}.png`);
    writeFileSync(file, PNG);
    await win.setInputFiles("#file", file);
    await win.click("#upload-form button[type=submit]");
    await win.waitForFunction(() => document.getElementById("upload-progress").value === 100, null, {
      timeout: 30_000,
    });
    await win.waitForFunction(
      () => /已上传/.test(document.getElementById("upload-status")?.textContent || ""),
      null,
      { timeout: 30_000 }
    );
    await win.waitForLoadState("load");
    await win.waitForTimeout(200);
    await win.goto(`${acceptance.url}/cases/${caseId}`);
    uploads += 1;
  }
  outcome.uploads = uploads;
  if (uploads !== outcome.notice_preview) fail(`the preview listed ${outcome.notice_preview} items, the case ${uploads}`);
  await look(win, "case-materials");

  // The acceptance office may not review: no such action is rendered, and a
  // forged POST is refused before the node signs anything.
  const windowActions = await actions(win);
  if (windowActions.includes("initial_reviewed")) fail("a review is offered at the acceptance office");
  const csrf = await win.$eval("input[name=csrf]", (i) => i.value);
  const forged = await win.evaluate(
    async ({ caseId, csrf }) => {
      const r = await fetch(`/cases/${caseId}/act`, {
        method: "POST",
        headers: { "Content-Type": "application/x-www-form-urlencoded" },
        body: new URLSearchParams({ csrf, to: "initial_reviewed", opinion: "越权" }).toString(),
      });
      return { status: r.status, text: await r.text() };
    },
    { caseId, csrf }
  );
  if (forged.status !== 422 || !forged.text.includes("不能签署")) {
    fail(`a review at the acceptance office was not refused: ${forged.status}`);
  }
  outcome.forged_review = forged.status;

  await act(win, "accepted", "");
  await act(win, "pushed", "");
  if ((await stageOf(win)) !== "pushed") fail("not pushed");
  await look(win, "case-pushed");

  // ---- the domicile township's initial review ----
  const town = await context.newPage();
  await signIn(town, domicile.url, domicile.user, config.password);
  await until(town, domicile.url + "/", "the case in the domicile township's queue", async (p) =>
    (await p.locator(`a[href="/cases/${caseId}"]`).count()) > 0
  );
  await look(town, "queue-domicile");
  await town.goto(`${domicile.url}/cases/${caseId}`);
  // The scans reached the domicile by sync, and the viewer shows them.
  await until(town, `${domicile.url}/cases/${caseId}`, "the scans at the domicile township", async (p) =>
    (await p.locator(".viewer img").count()) > 0 &&
    (await p.$$eval(".viewer img", (imgs) => imgs.every((i) => i.complete && i.naturalWidth > 0)))
  );
  await look(town, "case-domicile");
  await act(town, "initial_reviewed", "材料齐全，同意上报");

  // ---- the county DPF's re-review ----
  const county = await context.newPage();
  await signIn(county, dpf.url, dpf.user, config.password);
  await until(county, `${dpf.url}/cases/${caseId}`, "the case at the county DPF", async (p) =>
    (await actions(p)).includes("dpf_reviewed")
  );
  await look(county, "case-dpf");
  await act(county, "dpf_reviewed", "残疾等级与证件一致，同意");

  // ---- county civil affairs decides ----
  const bureau = await context.newPage();
  await signIn(bureau, civil.url, civil.user, config.password);
  await until(bureau, civil.url + "/", "the case in civil affairs' queue", async (p) =>
    (await p.locator(`a[href="/cases/${caseId}"]`).count()) > 0
  );
  await bureau.goto(`${civil.url}/cases/${caseId}`);
  await look(bureau, "case-decide");
  await act(bureau, "decided", "同意发放");
  await look(bureau, "case-decided");
  await bureau.goto(civil.url + "/supervision");
  await look(bureau, "supervision");

  // ---- the result arrives at the acceptance console ----
  await until(win, `${acceptance.url}/cases/${caseId}`, "the result at the acceptance office", async (p) =>
    (await stageOf(p)) === "result_received"
  );
  outcome.result_stage = await stageOf(win);
  await win.goto(acceptance.url + "/");
  if (!(await win.locator(`a[href="/cases/${caseId}"]`).count())) fail("the result is not in the window's queue");
  await look(win, "queue-result");
  await win.goto(`${acceptance.url}/cases/${caseId}`);
  await act(win, "notified", undefined, async (form) => form.locator("select[name=method]").selectOption("sms"));
  outcome.final_stage = await stageOf(win);
  const signatures = await win.$$eval("#history-h ~ .table-wrap tbody tr", (rows) =>
    rows.map((r) => r.textContent)
  );
  outcome.history_steps = signatures.length;
  outcome.all_signatures_valid = signatures.every((t) => t.includes("有效"));
  await look(win, "case-notified");
  await win.goto(acceptance.url + "/links");
  await look(win, "links");

  // High contrast, by the toggle.
  await win.goto(acceptance.url + "/");
  await Promise.all([win.waitForLoadState("load"), win.click("form[action='/prefs/contrast'] button")]);
  await win.goto(`${acceptance.url}/cases/${caseId}`);
  if (!(await win.locator("body.high-contrast").count())) fail("high contrast did not apply");
  await look(win, "case-high-contrast");
} catch (err) {
  for (const page of context.pages()) {
    const probe = await page
      .evaluate(async () => {
        const img = document.querySelector(".viewer img");
        if (!img) return "no image";
        const r = await fetch(img.getAttribute("src"));
        return `${r.status} ${r.headers.get("content-type")} ${(await r.text()).slice(0, 300)}`;
      })
      .catch((e) => `probe failed: ${e.message}`);
    console.error(`--- probe ${probe}`);
    console.error(`--- ${page.url()}\n${(await page.textContent("body").catch(() => "")).replace(/\s+/g, " ").slice(0, 2000)}`);
  }
  throw err;
} finally {
  await context.close();
}

outcome.audited = audited;
outcome.findings = findings;
outcome.serious = findings.filter((f) => f.impact === "serious" || f.impact === "critical");
outcome.screenshots = shots;
console.log(JSON.stringify(outcome));
if (outcome.serious.length) process.exit(2);

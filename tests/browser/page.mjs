// Drives the page at / of a running `aivideo serve` in Debian's headless Chromium:
// submits a prompt, waits for the job to complete and checks that its video plays, its
// poster and download link load, and that nothing was logged as an error.
// Usage: node page.mjs URL [TOKEN]   (exits 1 with a message on the first problem)
import { chromium } from "playwright-core";

const [url, token] = process.argv.slice(2);
const CHROMIUM = process.env.CHROMIUM || "/usr/bin/chromium";
const TIMEOUT = 30_000;
const errors = [];
let step = "start";

function fail(message) {
  console.error(`page.mjs: ${step}: ${message}`);
  if (errors.length) console.error("browser errors:\n  " + errors.join("\n  "));
  process.exit(1);
}
if (!url) fail("usage: node page.mjs URL [TOKEN]");
setTimeout(() => fail("took over 90 s"), 90_000).unref();

const browser = await chromium.launch({ executablePath: CHROMIUM, args: ["--no-sandbox"] });
try {
  const page = await browser.newPage();
  page.setDefaultTimeout(TIMEOUT);
  page.on("pageerror", (e) => errors.push(`page error: ${e.message}`));
  page.on("console", (m) => {
    // With a token, 401s are judged by their requests below; Chromium logs each one.
    if (m.type() === "error" && !(token && m.text().includes("status of 401")))
      errors.push(`console: ${m.text()} (${m.location().url})`);
  });
  // The page learns that it needs the token from a 401: only a request without it may get one.
  const sentToken = (r) => r.headers().authorization === `Bearer ${token}` || r.url().includes("access_token=");
  page.on("response", (r) => {
    if (token && r.status() === 401 && sentToken(r.request())) errors.push(`401 with the token: ${r.url()}`);
  });

  step = "open the page";
  await page.goto(url);
  if (token) {
    step = "enter the token";
    await page.locator("#token").waitFor({ state: "visible" });
    await page.locator("#token").fill(token);
    await page.locator("#token").press("Enter");
    await page.waitForFunction(() => document.getElementById("error").textContent === "");
  }

  step = "submit a prompt";
  await page.fill("#prompt", "a red ball bouncing on a black background");
  await page.selectOption("select[name=quality]", "low");
  await page.fill("input[name=num_steps]", "2");
  await page.fill("input[name=width]", "256");
  await page.fill("input[name=height]", "256");
  await page.click("#submit");
  const card = page.locator(".job").first();
  await card.waitFor();
  const id = (await card.getAttribute("id")).replace(/^job-/, "");

  step = `wait for job ${id} to complete`;
  await card.locator(".status.completed").waitFor();
  const status = await card.locator(".status").textContent();
  if (status !== "completed") fail(`status reads ${JSON.stringify(status)}`);

  step = "check the live progress";
  const progress = await card.locator("progress").getAttribute("title");
  if (!/^\w+ \d+\/\d+/.test(progress || "")) fail(`no progress event arrived (bar title ${JSON.stringify(progress)})`);

  step = "play the video";
  const video = card.locator("video");
  await video.waitFor();
  await video.evaluate((v) => v.play());
  const start = await video.evaluate((v) => v.currentTime);
  await page.waitForFunction(
    ([v, t]) => v.error || (!v.paused && v.currentTime !== t),
    [await video.elementHandle(), start],
  );
  const played = await video.evaluate((v) => ({
    error: v.error && v.error.message,
    size: `${v.videoWidth}x${v.videoHeight}`,
    src: v.currentSrc,
    poster: v.poster,
  }));
  if (played.error) fail(`the video failed: ${played.error}`);
  if (played.size !== "256x256") fail(`the video is ${played.size}, not 256x256`);

  step = "load the poster";
  if (!played.poster) fail("the video has no poster");
  const poster = await page.evaluate(async (src) => {
    const img = new Image();
    img.src = src;
    await img.decode();
    return `${img.naturalWidth}x${img.naturalHeight}`;
  }, played.poster);
  if (poster !== "256x256") fail(`the poster is ${poster}, not 256x256`);

  step = "check the download link";
  const link = card.locator("a[download]");
  if ((await link.getAttribute("download")) !== `${id}.mp4`) fail("the link does not name the file");
  const href = await link.evaluate((a) => a.href);
  if (href !== played.src) fail(`the link (${href}) is not the video (${played.src})`);
  const download = await page.evaluate(async (u) => {
    const r = await fetch(u);
    return { status: r.status, type: r.headers.get("content-type"), bytes: (await r.arrayBuffer()).byteLength };
  }, href);
  if (download.status !== 200 || download.type !== "video/mp4" || download.bytes < 1000)
    fail(`the download is ${JSON.stringify(download)}`);

  if (token) {
    step = "reload with the stored token";
    await page.reload();
    await page.locator(`#job-${id} .status.completed`).waitFor();
    if (await page.locator("#token-row").isVisible()) fail("the token field is shown again");
  }

  step = "fit a phone's screen";
  await page.setViewportSize({ width: 360, height: 740 });
  const width = await page.evaluate(() => document.documentElement.scrollWidth);
  if (width > 360) fail(`the page is ${width} px wide in a 360 px window`);

  step = "check for browser errors";
  await page.waitForTimeout(500);
  if (errors.length) fail(`${errors.length} error(s)`);
  console.log(`page.mjs: ok: job ${id} completed and played (${played.size}), poster and download load`);
} catch (e) {
  fail(e.message);
} finally {
  await browser.close();
}

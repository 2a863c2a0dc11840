// Every page of the built book, opened in headless Chromium as a reader would.
// Fails on a console error or a page error, a local file that does not load, an image that
// does not render, an internal link to a missing page, or `$...$` math left as raw text.
// Writes one screenshot per chapter under _build/screenshots for a person to look at.
// Usage: node tests/browser/check_book.mjs _build/html
import fs from "node:fs";
import path from "node:path";
import { pathToFileURL, fileURLToPath } from "node:url";
import chromium from "@sparticuz/chromium";
import puppeteer from "puppeteer-core";

const root = path.resolve(process.argv[2] ?? "_build/html");
const shots = path.join(path.dirname(root), "screenshots");
fs.mkdirSync(shots, { recursive: true });
const skip = new Set(["genindex.html", "search.html"]);
// Upstream noise, harmless to a reader: Jupyter Book 1.0.4 writes sphinx-thebe's config script
// twice into every page (the first copy defines THEBE_JS_URL; the course does not use thebe), and
// the PyData theme logs its first read of an empty theme setting as an error.
const known = [/Identifier 'THEBE_JS_URL' has already been declared/, /Got invalid theme mode: \. Resetting to auto/];
const report = (text) => known.some((re) => re.test(text)) || problems.push(text);
const pages = fs
  .readdirSync(root, { recursive: true })
  .filter((f) => f.endsWith(".html") && !f.startsWith("_") && !skip.has(path.basename(f)))
  .filter((f) => !fs.readFileSync(path.join(root, f), "utf8").toLowerCase().includes('http-equiv="refresh"')) // redirects
  .sort();

const problems = [];
const browser = await puppeteer.launch({
  args: [...chromium.args, "--disable-background-networking", "--no-first-run"],
  executablePath: await chromium.executablePath(),
  headless: true,
});
for (const file of pages) {
  const page = await browser.newPage();
  await page.setViewport({ width: 1200, height: 900 });
  const local = (url) => url.startsWith("file:");
  page.on("console", (msg) => {
    // the only remote resources are MathJax and fonts from CDNs, unreachable offline
    if (msg.type() === "error" && local(msg.location()?.url ?? "file:")) report(`${file}: console: ${msg.text()}`);
  });
  page.on("pageerror", (err) => report(`${file}: page error: ${err.message}`));
  page.on("requestfailed", (req) => {
    if (local(req.url())) problems.push(`${file}: failed to load ${req.url()}`);
  });
  await page.goto(pathToFileURL(path.join(root, file)).href, { waitUntil: "load" });
  const found = await page.evaluate(() => {
    const broken = [...document.images] // the book's own images; a remote badge needs the network
      .filter((img) => img.src.startsWith("file:") && (!img.complete || img.naturalWidth === 0))
      .map((img) => img.src);
    const noAlt = [...document.querySelectorAll(".cell_output img")] // a figure's alt text is its caption's
      .filter((img) => !img.alt || /\.(png|svg|jpe?g)$/i.test(img.alt))
      .map((img) => img.src);
    const links = [...document.querySelectorAll("a[href]")]
      .map((a) => new URL(a.getAttribute("href"), document.baseURI).href) // SVG links too
      .filter((href) => href.startsWith("file:"));
    const main = document.querySelector("main") ?? document.body;
    const copy = main.cloneNode(true);
    copy.querySelectorAll("pre, code, .highlight, .output, .cell_output").forEach((el) => el.remove());
    const rawMath = copy.textContent.match(/(^|[^\\$\w])\$[^$\s][^$\n]{0,80}\$(?![\w$])/g) ?? [];
    return { broken, noAlt, links, rawMath };
  });
  found.broken.forEach((src) => problems.push(`${file}: image does not render: ${src}`));
  found.noAlt.forEach((src) => problems.push(`${file}: figure without alt text: ${src}`));
  for (const href of found.links) {
    const target = fileURLToPath(href.split("#")[0]);
    if (!fs.existsSync(target)) problems.push(`${file}: broken link to ${path.relative(root, target)}`);
  }
  found.rawMath.forEach((m) => problems.push(`${file}: raw math left in the text: ${m.trim()}`));
  if (file.startsWith("notebooks/")) {
    await page.screenshot({ path: path.join(shots, path.basename(file, ".html") + ".png") });
  }
  await page.close();
}
await browser.close();
console.log(`browser check: ${pages.length} pages, ${problems.length} problems; screenshots in ${path.relative(process.cwd(), shots)}`);
if (problems.length) {
  console.log(problems.join("\n"));
  process.exit(1);
}

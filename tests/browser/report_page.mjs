// The report page as a manager on a laptop sees it, in headless Chromium (Debian's `chromium`,
// driven by playwright-core).
//
//   node report_page.mjs --url URL --agent NAME --screenshot PATH [--chromium PATH]
//
// Opens the signed link, checks the heading, the figures, the trend chart (inline SVG with a
// line), the per-agent table naming --agent, that nothing was fetched from another origin and
// that no script ran; writes a full-page screenshot. Exits 1 naming every failed check, 2 when
// it could not run.

import { parseArgs } from 'node:util';
import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';

const { values: args } = parseArgs({
  options: {
    url: { type: 'string' },
    agent: { type: 'string' },
    screenshot: { type: 'string' },
    chromium: { type: 'string', default: process.env.CHROMIUM || '/usr/bin/chromium' },
  },
});
for (const name of ['url', 'agent', 'screenshot']) {
  if (!args[name]) usage(`--${name} is required`);
}
let chromium;
try {
  ({ chromium } = await import('playwright-core'));
} catch (e) {
  usage(`playwright-core is not installed (${e.code ?? e.message}): run \`npm ci\` in tests/browser`);
}

const failures = [];
const check = (ok, message) => {
  if (!ok) failures.push(message);
  return ok;
};

let browser;
try {
  browser = await chromium.launch({
    executablePath: args.chromium,
    headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking'],
  });
} catch (e) {
  usage(`could not start Chromium at ${args.chromium}: ${String(e?.message ?? e).split('\n')[0]}`);
}

try {
  const context = await browser.newContext({ viewport: { width: 1280, height: 900 }, locale: 'en-US' });
  const page = await context.newPage();
  const origin = new URL(args.url).origin;
  const foreign = [];
  page.on('request', (r) => {
    if (!r.url().startsWith(origin) && !r.url().startsWith('data:')) foreign.push(r.url());
  });
  const errors = [];
  page.on('pageerror', (e) => errors.push(e.message));
  page.on('console', (m) => m.type() === 'error' && errors.push(m.text()));

  const opened = await page.goto(args.url);
  if (!check(opened?.status() === 200, `opening the link answered ${opened?.status()}, not 200`)) throw new Error('stop');
  const h1 = page.getByRole('heading', { level: 1 });
  check(/how customers rate us/.test(await h1.innerText()), `the heading reads "${await h1.innerText()}"`);
  const chart = page.locator('svg[role=img]');
  check((await chart.count()) === 1, 'there is no trend chart');
  const box = await chart.boundingBox();
  check(box && box.width > 400 && box.height > 100, `the chart is ${box?.width}x${box?.height} px`);
  check((await page.locator('svg polyline').count()) === 1, 'the chart has no satisfaction line');
  const row = page.getByRole('row', { name: new RegExp(args.agent) });
  check((await row.count()) === 1, `the per-agent table has no row for ${args.agent}`);
  check((await page.locator('script').count()) === 0, 'the page carries script');
  const text = await page.locator('body').innerText();
  check(/answers/.test(text) && /NPS/.test(text), 'the figures (answers, NPS) are missing');
  check(foreign.length === 0, `the page fetched from elsewhere: ${foreign.join(', ')}`);
  check(errors.length === 0, `the page logged errors: ${errors.join('; ')}`);
  mkdirSync(dirname(args.screenshot), { recursive: true });
  await page.screenshot({ path: args.screenshot, fullPage: true });
} catch (e) {
  if (e.message !== 'stop') failures.push(String(e?.message ?? e).split('\n')[0]);
} finally {
  await browser.close();
}
if (failures.length) {
  console.error(`report page: ${failures.length} check(s) failed at ${args.url}:`);
  for (const f of failures) console.error(`  - ${f}`);
  process.exit(1);
}
console.log(`report page: all checks passed; screenshot ${args.screenshot}`);

function usage(message) {
  console.error(`report_page.mjs: ${message}`);
  process.exit(2);
}

// The rating page as a customer on a phone sees it, in headless Chromium (Debian's `chromium`,
// driven by playwright-core; Playwright's own browser builds are never downloaded).
//
//   node rating_page.mjs --url URL --choice Good --comment TEXT --screenshot PATH [--chromium PATH]
//
// Opens the rating link the way a customer's phone does, checks the thank-you page (the clicked
// choice preselected), checks what a phone user would notice (no sideways scrolling, tap targets,
// no zoom on focus, names for every control, keyboard reach), types the comment, submits, checks
// the confirmation and that the comment comes back as text, then opens the link again and sees the
// comment kept. Writes a screenshot of the submitted page to --screenshot. Exits 1 with a message
// naming every check that failed; 2 when it could not run at all.
//
// Started by tests/tests/browser.rs (`cargo test -p closedloop-tests --features emulators --test browser`).

import { parseArgs } from 'node:util';
import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';

const { values: args } = parseArgs({
  options: {
    url: { type: 'string' },
    choice: { type: 'string' },
    comment: { type: 'string' },
    screenshot: { type: 'string' },
    chromium: { type: 'string', default: process.env.CHROMIUM || '/usr/bin/chromium' },
  },
});
for (const name of ['url', 'choice', 'comment', 'screenshot']) {
  if (!args[name]) usage(`--${name} is required`);
}

let chromium;
try {
  ({ chromium } = await import('playwright-core'));
} catch (e) {
  usage(`playwright-core is not installed (${e.code ?? e.message}): run \`npm ci\` in tests/browser`);
}

// What a phone user meets. The user agent is a real phone's: a "HeadlessChrome" agent reads as a
// mail scanner to the rating link, which then records nothing.
const PHONE = {
  viewport: { width: 390, height: 844 },
  deviceScaleFactor: 3,
  isMobile: true,
  hasTouch: true,
  locale: 'en-US',
};
const MIN_TAP = 44; // CSS px: Apple's and WCAG 2.5.5's minimum touch target
const MIN_INPUT_FONT = 16; // CSS px: below this, iOS Safari zooms into the field on focus

/** A failed check the rest depends on: stops the run. */
class Fatal extends Error {}

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
    args: [
      '--no-sandbox',
      '--disable-gpu',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
  });
} catch (e) {
  usage(`could not start Chromium at ${args.chromium} (apt-get install chromium, or set CHROMIUM): ${firstLine(e)}`);
}

try {
  const major = browser.version().split('.')[0];
  const context = await browser.newContext({
    ...PHONE,
    userAgent:
      `Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) ` +
      `Chrome/${major}.0.0.0 Mobile Safari/537.36`,
  });
  context.setDefaultTimeout(10_000);
  const page = await context.newPage();
  const seenErrors = [];
  page.on('pageerror', (e) => seenErrors.push(e.message));

  // 1. The customer taps the link in the email.
  const opened = await page.goto(args.url);
  must(opened?.status() === 200, `opening the link answered ${opened?.status()}, not 200`);
  await must_see(page.getByRole('heading', { level: 1, name: 'Thank you for your feedback' }),
    'the thank-you heading');
  await must_see(page.getByRole('status').filter({ hasText: 'We recorded your answer' }),
    'the note that the answer was recorded');
  const choices = page.getByRole('radio');
  const names = await Promise.all((await choices.all()).map(accessibleName));
  must(names.includes(args.choice), `no choice named "${args.choice}" (choices: ${names.join(', ')})`);
  const chosen = page.getByRole('radio', { name: args.choice, exact: true });
  must(await chosen.isChecked(), `the clicked choice "${args.choice}" is not preselected`);
  for (const name of names.filter((n) => n !== args.choice)) {
    check(!(await page.getByRole('radio', { name, exact: true }).isChecked()),
      `"${name}" is selected too, besides the clicked "${args.choice}"`);
  }
  const commentBox = page.getByLabel(/Anything you'd like to add/);
  const send = page.getByRole('button', { name: 'Send' });
  await must_see(commentBox, 'the comment box, found by its label');
  await must_see(send, 'the Send button');

  // 2. What a phone user notices.
  const doc = await page.evaluate(() => ({
    lang: document.documentElement.lang,
    title: document.title,
    scrollWidth: document.documentElement.scrollWidth,
    innerWidth: window.innerWidth,
  }));
  check(wideBy(doc) <= 0, `the page is ${doc.scrollWidth} px wide on a ${PHONE.viewport.width} px phone ` +
    `(window ${doc.innerWidth} px): it scrolls sideways or is shrunk to fit`);
  check(doc.lang.trim() !== '', 'the page has no lang attribute (screen readers guess the language)');
  check(doc.title.trim() !== '', 'the page has no <title> (the tab and history show the address)');
  for (const name of names) {
    const box = await tapTarget(page.getByRole('radio', { name, exact: true }));
    check(box.width >= MIN_TAP && box.height >= MIN_TAP,
      `the choice "${name}" is a ${box.width}x${box.height} px tap target, under ${MIN_TAP}x${MIN_TAP}`);
  }
  const sendBox = await tapTarget(send);
  check(sendBox.width >= MIN_TAP && sendBox.height >= MIN_TAP,
    `the Send button is a ${sendBox.width}x${sendBox.height} px tap target, under ${MIN_TAP}x${MIN_TAP}`);
  const fontSize = await commentBox.evaluate((el) => parseFloat(getComputedStyle(el).fontSize));
  check(fontSize >= MIN_INPUT_FONT,
    `the comment box's text is ${fontSize}px: under ${MIN_INPUT_FONT}px, iOS zooms in when it is tapped`);
  const controls = page.locator('main').locator('input:not([type=hidden]), textarea, select, button');
  for (const control of await controls.all()) {
    const name = await accessibleName(control);
    const what = await control.evaluate((el) => el.outerHTML.slice(0, 80));
    check(name !== '', `a form control has no accessible name: ${what}`);
  }

  // 3. Keyboard: Tab reaches the choices (one stop for the group, at the checked choice), the
  //    comment box and the button, in that order, and each shows where the focus is.
  const stops = [];
  for (let i = 0; i < 12 && !stops.some((s) => s.role === 'button'); i++) {
    await page.keyboard.press('Tab');
    const focused = page.locator(':focus');
    if ((await focused.count()) === 0) continue;
    const stop = {
      role: await focused.evaluate((el) => (el.type === 'radio' ? 'radio' : el.tagName.toLowerCase())),
      name: await accessibleName(focused),
      ring: await focusRing(focused),
    };
    if (stops.length && stop.role === stops[0].role && stop.name === stops[0].name) break; // wrapped
    stops.push(stop);
  }
  const order = stops.map((s) => `${s.role} "${s.name}"`).join(' → ');
  const at = (role, name) => stops.findIndex((s) => s.role === role && (name === undefined || s.name === name));
  const [radioStop, boxStop, buttonStop] = [at('radio', args.choice), at('textarea'), at('button', 'Send')];
  check(radioStop >= 0, `Tab never reaches the choices (stops: ${order})`);
  check(boxStop >= 0, `Tab never reaches the comment box (stops: ${order})`);
  check(buttonStop >= 0, `Tab never reaches the Send button (stops: ${order})`);
  check(radioStop < boxStop && boxStop < buttonStop,
    `Tab order is not choices, comment, Send (stops: ${order})`);
  for (const s of stops.filter((s) => ['radio', 'textarea', 'button'].includes(s.role))) {
    check(s.ring, `the ${s.role} "${s.name}" shows no focus outline when reached by keyboard`);
  }

  // 4. The customer types a comment with characters that must be escaped, and sends it.
  await commentBox.tap();
  await page.keyboard.type(args.comment);
  must((await commentBox.inputValue()) === args.comment, 'the comment box does not hold what was typed');
  const [posted] = await Promise.all([
    page.waitForResponse((r) => r.request().method() === 'POST'),
    send.tap(),
  ]);
  must(posted.status() === 200, `sending the comment answered ${posted.status()}, not 200`);
  await must_see(page.getByRole('status').filter({ hasText: 'Your answer and comment were saved' }),
    'the confirmation that the comment was saved');
  must(await page.getByRole('radio', { name: args.choice, exact: true }).isChecked(),
    `after sending, "${args.choice}" is no longer selected`);
  const shownBack = await page.getByLabel(/Anything you'd like to add/).inputValue();
  check(shownBack === args.comment,
    `the comment comes back changed: ${JSON.stringify(shownBack)} instead of ${JSON.stringify(args.comment)}`);
  const injected = await page.locator('main b, main script, main img').count();
  check(injected === 0, `the comment was rendered as markup (${injected} element(s) from it on the page)`);
  const after = await page.evaluate(() => ({
    scrollWidth: document.documentElement.scrollWidth,
    innerWidth: window.innerWidth,
  }));
  check(wideBy(after) <= 0, `after sending, the page is ${after.scrollWidth} px wide on a ` +
    `${PHONE.viewport.width} px phone: it scrolls sideways or is shrunk to fit`);
  mkdirSync(dirname(args.screenshot), { recursive: true });
  await page.screenshot({ path: args.screenshot, fullPage: true });

  // 5. Coming back to the link later shows the kept choice and comment.
  const again = await page.goto(args.url);
  must(again?.status() === 200, `opening the link again answered ${again?.status()}, not 200`);
  check(await page.getByRole('radio', { name: args.choice, exact: true }).isChecked(),
    `opening the link again, "${args.choice}" is not selected`);
  const kept = await page.getByLabel(/Anything you'd like to add/).inputValue();
  check(kept === args.comment,
    `opening the link again, the comment box holds ${JSON.stringify(kept)}, not the comment sent`);

  check(seenErrors.length === 0, `the page threw script errors: ${seenErrors.join('; ')}`);
} catch (e) {
  failures.push(e instanceof Fatal ? e.message : `${firstLine(e)}`);
} finally {
  await browser.close();
}

if (failures.length) {
  console.error(`rating page: ${failures.length} check(s) failed at ${args.url}:`);
  for (const f of failures) console.error(`  - ${f}`);
  process.exit(1);
}
console.log(`rating page: all checks passed; screenshot ${args.screenshot}`);

// ---------------------------------------------------------------------------------------------

function must(ok, message) {
  if (!ok) throw new Fatal(message);
}

async function must_see(locator, what) {
  try {
    await locator.waitFor({ state: 'visible', timeout: 5_000 });
  } catch {
    const text = (await locator.page().locator('body').innerText().catch(() => '')).slice(0, 400);
    throw new Fatal(`the page does not show ${what}; it shows: ${JSON.stringify(text)}`);
  }
}

/** How far the page overflows the phone's width. Mobile Chrome zooms out to fit a page wider than
 *  the screen, widening `innerWidth` with it: so both are compared with the phone's own width. */
function wideBy({ scrollWidth, innerWidth }) {
  return Math.max(scrollWidth, innerWidth) - PHONE.viewport.width;
}

/** The accessible name Chromium computes, read from its ARIA snapshot (`- radio "Good" [checked]`). */
async function accessibleName(locator) {
  const snapshot = await locator.ariaSnapshot();
  const m = snapshot.split('\n')[0].match(/^- [\w-]+ "((?:[^"\\]|\\.)*)"/);
  return m ? JSON.parse(`"${m[1]}"`) : '';
}

/** The area a tap selects: the control itself or any of its labels, whichever is larger. */
async function tapTarget(locator) {
  return locator.evaluate((el) => {
    const boxes = [el, ...(el.labels ?? [])].map((e) => e.getBoundingClientRect());
    const best = boxes.reduce((a, b) => (b.width * b.height > a.width * a.height ? b : a));
    return { width: Math.round(best.width), height: Math.round(best.height) };
  });
}

/** Whether focus is drawn on the element, or (for a visually hidden input) on its label's content. */
async function focusRing(locator) {
  return locator.evaluate((el) => {
    const drawn = [el, ...[...(el.labels ?? [])].flatMap((l) => [l, ...l.querySelectorAll('*')])];
    return drawn.some((e) => {
      const s = getComputedStyle(e);
      if (parseFloat(s.opacity) === 0) return false; // an outline nobody sees
      return (s.outlineStyle !== 'none' && parseFloat(s.outlineWidth) > 0) || s.boxShadow !== 'none';
    });
  });
}

function firstLine(e) {
  return String(e?.message ?? e).split('\n')[0];
}

function usage(message) {
  console.error(`rating_page.mjs: ${message}`);
  process.exit(2);
}

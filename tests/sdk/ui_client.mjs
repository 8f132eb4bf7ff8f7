// Drives Faultline's web UI in headless Chromium for tests/ui.rs: runs a script of steps and
// reports what a person would have seen on each page.
//
// Usage: node ui_client.mjs SCRIPT.json
//
// SCRIPT.json: {"steps": [STEP, ...]}, each STEP one of
//   {"do": "goto", "url": URL}                        open a page
//   {"do": "fill", "selector": CSS, "value": TEXT}    type into a field
//   {"do": "click", "selector": CSS}                  click, then wait for the page it loads
//   {"do": "press", "selector": CSS, "key": KEY}      press a key in a field, then wait likewise
//   {"do": "snapshot", "name": NAME, "screenshot"?: PATH}
//                                                     record the current page (and a full-page
//                                                     screenshot to PATH, if given)
// A click or press must load a new page (a link, a form): the step fails when none comes.
//
// Every page runs under its own Content-Security-Policy (nothing is bypassed). Console errors,
// uncaught exceptions, CSP violations, failed requests, answers >= 400 to sub-resources and
// dialogs (alert/confirm) are collected and reported with the next snapshot (`problems`,
// `dialogs`); the browser's own request for /favicon.ico is reported apart (`notes`).
//
// Prints one JSON line on stdout: {"snapshots": [SNAPSHOT, ...], "failure": null | {...}}.
// A step that fails stops the script: `failure` says which step, why, and on which page (with a
// screenshot next to the others); the exit status is 0 either way so that the Rust test reports
// it with the snapshots taken so far. Exits non-zero only when the browser could not be driven.
import { mkdir, mkdtemp, readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';

import { chromium } from 'playwright-core';

const CHROMIUM_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];
const isFavicon = (url) => {
  try {
    return new URL(url).pathname === '/favicon.ico';
  } catch {
    return false;
  }
};

// How long one action (a click, a page load) may take.
const ACTION_TIMEOUT = 15000;

// Runs in every page before its own scripts: records CSP violations where the test can read
// them (the page's CSP does not apply to scripts injected by the driver).
const INIT_SCRIPT = () => {
  window.__faultlineTest = { csp: [] };
  document.addEventListener('securitypolicyviolation', (e) => {
    window.__faultlineTest.csp.push(
      `${e.violatedDirective} blocked ${e.blockedURI || '(inline)'} at ${e.sourceFile || document.URL}:${e.lineNumber}` +
        (e.sample ? ` sample: ${e.sample}` : ''),
    );
  });
};

// Runs in the page: what is on it. Returns plain JSON.
const OBSERVE = () => {
  const text = (el) => (el ? el.innerText.replace(/\s+/g, ' ').trim() : null);
  const all = (sel) => Array.from(document.querySelectorAll(sel));
  const urlAttrs = ['href', 'src', 'action', 'formaction', 'xlink:href', 'data', 'poster', 'srcdoc', 'background', 'ping'];
  const protocolOf = (value) => {
    // What the browser would run: control characters and whitespace inside the scheme are ignored.
    const cleaned = value.replace(/[\u0000-\u0020]/g, '');
    try {
      return new URL(cleaned, document.baseURI).protocol;
    } catch {
      return null;
    }
  };
  const onAttributes = [];
  const scriptUrls = [];
  for (const el of all('*')) {
    for (const attr of Array.from(el.attributes)) {
      const name = attr.name.toLowerCase();
      if (name.startsWith('on')) {
        onAttributes.push({ tag: el.tagName.toLowerCase(), attr: attr.name, value: attr.value.slice(0, 200) });
      }
      if (urlAttrs.includes(name) || name.endsWith(':href')) {
        const protocol = protocolOf(attr.value);
        if (protocol === 'javascript:' || protocol === 'vbscript:' || (protocol === 'data:' && el.tagName.toLowerCase() !== 'img')) {
          scriptUrls.push({ tag: el.tagName.toLowerCase(), attr: attr.name, value: attr.value.slice(0, 200) });
        }
      }
    }
  }
  return {
    url: document.URL,
    title: document.title,
    h1: text(document.querySelector('h1')),
    text: document.body ? document.body.innerText : '',
    rows: all('tr[data-row]').map((tr) => ({
      issue: tr.getAttribute('data-issue'),
      title: text(tr.querySelector('a[data-open]')),
      href: tr.querySelector('a[data-open]')?.getAttribute('href') ?? null,
      text: text(tr),
    })),
    no_issues: document.querySelector('#no-issues') !== null,
    frames: all('.frame').map((f) => ({ in_app: f.classList.contains('in-app'), text: text(f) })),
    crumbs: all('.crumbs li').map((li) => text(li)),
    forms: all('form').map((f) => ({
      id: f.id || null,
      action: f.getAttribute('action'),
      method: (f.getAttribute('method') || 'get').toLowerCase(),
      buttons: all('button').filter((b) => b.form === f).map((b) => ({ name: b.name, value: b.value, text: text(b) })),
    })),
    links: all('a[href]').map((a) => a.getAttribute('href')),
    scripts: all('script').map((s) => ({
      src: s.getAttribute('src') ?? s.getAttribute('href') ?? s.getAttributeNS('http://www.w3.org/1999/xlink', 'href'),
      inline: s.textContent.slice(0, 200),
    })),
    frames_embedded: all('iframe, frame, object, embed').map((e) => e.outerHTML.slice(0, 200)),
    on_attributes: onAttributes,
    script_urls: scriptUrls,
    xss: typeof window.__xss === 'undefined' ? null : String(window.__xss),
    csp_violations: window.__faultlineTest ? window.__faultlineTest.csp.slice() : ['(the test probe did not run on this page)'],
  };
};

async function main() {
  const scriptPath = process.argv[2];
  if (!scriptPath) throw new Error('usage: node ui_client.mjs SCRIPT.json');
  const script = JSON.parse(await readFile(scriptPath, 'utf8'));

  const userDataDir = await mkdtemp(path.join(os.tmpdir(), 'faultline-ui-chromium-'));
  const snapshots = [];
  let failure = null;
  let context;
  try {
    context = await chromium.launchPersistentContext(userDataDir, {
      executablePath: process.env.CHROMIUM_PATH || '/usr/bin/chromium',
      headless: true,
      args: CHROMIUM_ARGS,
      viewport: { width: 1280, height: 900 },
    });
    await context.addInitScript(INIT_SCRIPT);
    const page = context.pages()[0] || (await context.newPage());

    // What happened since the last snapshot.
    let problems = [];
    let notes = [];
    let dialogs = [];
    let documentStatus = null;
    page.on('console', (msg) => {
      console.error(`[page ${msg.type()}] ${msg.text()}`);
      if (msg.type() !== 'error') return;
      const where = msg.location()?.url || page.url();
      // The browser's own request for /favicon.ico is not the page's doing: a note, not a problem.
      if (isFavicon(where)) notes.push(`console error: ${msg.text()} (${where})`);
      else problems.push(`console error: ${msg.text()} (${where})`);
    });
    page.on('pageerror', (err) => {
      console.error(`[page error] ${err.stack || err}`);
      problems.push(`uncaught exception: ${err.message || err} (${page.url()})`);
    });
    page.on('requestfailed', (req) => {
      // A navigation replaced by the next one is not a failure.
      if (req.failure()?.errorText === 'net::ERR_ABORTED' && req.isNavigationRequest()) return;
      problems.push(`request failed: ${req.method()} ${req.url()}: ${req.failure()?.errorText}`);
    });
    page.on('response', (resp) => {
      const req = resp.request();
      if (req.isNavigationRequest() && resp.frame() === page.mainFrame()) {
        documentStatus = resp.status();
      } else if (resp.status() >= 400 && isFavicon(resp.url())) {
        notes.push(`the browser's request for the icon answered ${resp.status()}: ${resp.url()}`);
      } else if (resp.status() >= 400) {
        problems.push(`sub-resource answered ${resp.status()}: ${req.method()} ${resp.url()}`);
      }
    });
    page.on('dialog', async (dialog) => {
      dialogs.push(`${dialog.type()}: ${dialog.message()}`);
      await dialog.dismiss().catch(() => {});
    });

    const loadsAPage = async (action) => {
      const navigated = page.waitForEvent('framenavigated', {
        predicate: (f) => f === page.mainFrame(),
        timeout: 2 * ACTION_TIMEOUT,
      });
      // When the action fails, its error is the one to report.
      navigated.catch(() => {});
      await action();
      await navigated.catch(() => {
        throw new Error(`no page was loaded within ${2 * ACTION_TIMEOUT} ms`);
      });
      await page.waitForLoadState('load', { timeout: ACTION_TIMEOUT });
    };

    for (const [index, step] of script.steps.entries()) {
      try {
        switch (step.do) {
          case 'goto':
            await page.goto(step.url, { waitUntil: 'load', timeout: ACTION_TIMEOUT });
            break;
          case 'fill':
            await page.fill(step.selector, step.value, { timeout: ACTION_TIMEOUT });
            break;
          case 'click':
            await loadsAPage(() => page.click(step.selector, { timeout: ACTION_TIMEOUT }));
            break;
          case 'press':
            await loadsAPage(() => page.press(step.selector, step.key, { timeout: ACTION_TIMEOUT }));
            break;
          case 'snapshot': {
            const snapshot = await page.evaluate(OBSERVE);
            snapshot.name = step.name;
            snapshot.status = documentStatus;
            snapshot.problems = problems.concat(snapshot.csp_violations.map((v) => `CSP violation: ${v}`));
            snapshot.dialogs = dialogs;
            snapshot.notes = notes;
            problems = [];
            notes = [];
            dialogs = [];
            if (step.screenshot) {
              await mkdir(path.dirname(step.screenshot), { recursive: true });
              await page.screenshot({ path: step.screenshot, fullPage: true });
              snapshot.screenshot = step.screenshot;
              console.error(`screenshot of ${snapshot.url}: ${step.screenshot}`);
            }
            snapshots.push(snapshot);
            break;
          }
          default:
            throw new Error(`unknown step ${JSON.stringify(step)}`);
        }
      } catch (err) {
        failure = {
          step: index,
          what: step,
          error: String(err.message || err).replace(/\x1b\[[0-9;]*m/g, '').split('\n').slice(0, 6).join('\n'),
          url: page.url(),
          status: documentStatus,
          text: await page.evaluate(() => (document.body ? document.body.innerText : '')).catch(() => null),
          problems,
          dialogs,
        };
        if (script.failure_screenshot) {
          await mkdir(path.dirname(script.failure_screenshot), { recursive: true });
          await page.screenshot({ path: script.failure_screenshot, fullPage: true }).catch(() => {});
          failure.screenshot = script.failure_screenshot;
        }
        break;
      }
    }
  } finally {
    if (context) await context.close();
    await rm(userDataDir, { recursive: true, force: true });
  }
  console.log(JSON.stringify({ snapshots, failure }));
}

main().catch((err) => {
  console.error(err);
  process.exitCode = 1;
});

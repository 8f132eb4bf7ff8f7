// Reports Faultline's end-to-end scenario from a real Chromium with @sentry/browser.
//
// Usage: node browser_client.mjs DSN
//
// Bundles @sentry/browser with esbuild (browser/entry.js → an IIFE exposing window.Sentry, like
// the CDN's bundle.min.js), serves browser/index.html + app.js on 127.0.0.1:<random port>, opens
// it in headless Chromium (playwright-core, /usr/bin/chromium or $CHROMIUM_PATH) with the DSN in
// the query string, clicks #report and waits until the page has flushed (see browser/app.js).
//
// Prints one JSON line on stdout: {"exception_ids": [...], "message_ids": [...], "statuses": [...],
// "user_agent": "..."}. Exits non-zero if the page could not deliver every event with a 2xx answer.
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import * as esbuild from 'esbuild';
import { chromium } from 'playwright-core';

const here = path.dirname(fileURLToPath(import.meta.url));
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

async function buildSentryBundle() {
  const result = await esbuild.build({
    absWorkingDir: here,
    entryPoints: [path.join(here, 'browser', 'entry.js')],
    bundle: true,
    minify: true,
    format: 'iife',
    platform: 'browser',
    target: 'es2020',
    write: false,
    logLevel: 'silent',
  });
  return result.outputFiles[0].contents;
}

async function serve(files) {
  const server = http.createServer((req, res) => {
    const file = files[new URL(req.url, 'http://x').pathname];
    if (!file) {
      res.writeHead(404).end();
      return;
    }
    res.writeHead(200, { 'Content-Type': file.type, 'Cache-Control': 'no-store' }).end(file.body);
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  return server;
}

async function main() {
  const dsn = process.argv[2];
  if (!dsn) throw new Error('usage: node browser_client.mjs DSN');

  const files = {
    '/': { type: 'text/html; charset=utf-8', body: await readFile(path.join(here, 'browser', 'index.html')) },
    '/app.js': { type: 'text/javascript', body: await readFile(path.join(here, 'browser', 'app.js')) },
    '/sentry.bundle.min.js': { type: 'text/javascript', body: await buildSentryBundle() },
    '/favicon.ico': { type: 'image/x-icon', body: '' },
  };
  const server = await serve(files);
  const userDataDir = await mkdtemp(path.join(os.tmpdir(), 'faultline-chromium-'));
  let context;
  try {
    context = await chromium.launchPersistentContext(userDataDir, {
      executablePath: process.env.CHROMIUM_PATH || '/usr/bin/chromium',
      headless: true,
      args: CHROMIUM_ARGS,
    });
    const page = context.pages()[0] || (await context.newPage());
    page.on('console', (msg) => console.error(`[page ${msg.type()}] ${msg.text()}`));
    page.on('pageerror', (err) => console.error(`[page error] ${err.stack || err}`));
    page.on('requestfailed', (req) => console.error(`[request failed] ${req.method()} ${req.url()}: ${req.failure()?.errorText}`));

    const { port } = server.address();
    await page.goto(`http://127.0.0.1:${port}/?dsn=${encodeURIComponent(dsn)}`);
    await page.click('#report');
    await page.waitForFunction(() => window.__faultlineResult !== undefined, null, { timeout: 30000 });
    const result = await page.evaluate(() => window.__faultlineResult);
    result.user_agent = await page.evaluate(() => navigator.userAgent);
    console.log(JSON.stringify(result));
    if (!result.ok) {
      console.error(`@sentry/browser did not deliver everything: ${JSON.stringify(result)}`);
      process.exitCode = 1;
    }
  } finally {
    if (context) await context.close();
    server.close();
    await rm(userDataDir, { recursive: true, force: true });
  }
}

main().catch((err) => {
  console.error(err);
  process.exitCode = 1;
});

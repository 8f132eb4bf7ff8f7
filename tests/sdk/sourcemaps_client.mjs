// Builds and runs the page of Faultline's source map tests (tests/sourcemaps.rs).
//
// Usage:
//   node sourcemaps_client.mjs build DIR NAME
//     copies sourcemaps/app.js to DIR/src/app.js and bundles it with @sentry/browser into
//     DIR/static/NAME + NAME.map (esbuild --minify --sourcemap), as a site would before running
//     `sentry-cli sourcemaps inject/upload` on DIR/static. NAME is e.g. app.min.js, or
//     app.3f9a1c.min.js for a build whose file name carries its hash.
//   node sourcemaps_client.mjs run DIR NAME RELEASE DSN
//     serves DIR/static/NAME on 127.0.0.1:<random port>, opens the page in headless
//     Chromium (playwright-core, /usr/bin/chromium or $CHROMIUM_PATH) with the DSN and release
//     in the query string, clicks #checkout and waits until the error was flushed.
//     Prints one JSON line: {"exception_ids": [...], "message_ids": [], "ok": true}.
import { copyFile, mkdir, readFile } from 'node:fs/promises';
import http from 'node:http';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import * as esbuild from 'esbuild';
import { chromium } from 'playwright-core';

const here = path.dirname(fileURLToPath(import.meta.url));

const page = (name) => `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Shop</title>
<script src="/static/${name}"></script></head>
<body><button id="checkout" type="button">Check out</button></body></html>`;

async function build(dir, name) {
  await mkdir(path.join(dir, 'src'), { recursive: true });
  await copyFile(path.join(here, 'sourcemaps', 'app.js'), path.join(dir, 'src', 'app.js'));
  await esbuild.build({
    absWorkingDir: dir,
    entryPoints: [path.join(dir, 'src', 'app.js')],
    outfile: path.join(dir, 'static', name),
    nodePaths: [path.join(here, 'node_modules')],
    bundle: true,
    minify: true,
    sourcemap: true,
    format: 'iife',
    platform: 'browser',
    target: 'es2020',
    logLevel: 'silent',
  });
}

async function run(dir, name, release, dsn) {
  const files = {
    '/': { type: 'text/html; charset=utf-8', body: page(name) },
    [`/static/${name}`]: { type: 'text/javascript', body: await readFile(path.join(dir, 'static', name)) },
    '/favicon.ico': { type: 'image/x-icon', body: '' },
  };
  const server = http.createServer((req, res) => {
    const file = files[new URL(req.url, 'http://x').pathname];
    if (!file) {
      res.writeHead(404).end();
      return;
    }
    res.writeHead(200, { 'Content-Type': file.type, 'Cache-Control': 'no-store' }).end(file.body);
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  const userDataDir = await mkdtemp(path.join(os.tmpdir(), 'faultline-chromium-'));
  let context;
  try {
    context = await chromium.launchPersistentContext(userDataDir, {
      executablePath: process.env.CHROMIUM_PATH || '/usr/bin/chromium',
      headless: true,
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking'],
    });
    const page = context.pages()[0] || (await context.newPage());
    page.on('console', (msg) => console.error(`[page ${msg.type()}] ${msg.text()}`));
    page.on('pageerror', (err) => console.error(`[page error] ${err.stack || err}`));
    const { port } = server.address();
    const query = new URLSearchParams({ dsn, release });
    await page.goto(`http://127.0.0.1:${port}/?${query}`);
    await page.click('#checkout');
    await page.waitForFunction(() => window.__faultlineResult !== undefined, null, { timeout: 30000 });
    const result = await page.evaluate(() => window.__faultlineResult);
    console.log(JSON.stringify(result));
    if (!result.ok) process.exitCode = 1;
  } finally {
    if (context) await context.close();
    server.close();
    await rm(userDataDir, { recursive: true, force: true });
  }
}

const [command, ...args] = process.argv.slice(2);
const main = command === 'build' ? () => build(args[0], args[1]) : () => run(...args.slice(0, 4));
main().catch((err) => {
  console.error(err);
  process.exitCode = 1;
});

// Bundled by ../browser_client.mjs (esbuild, IIFE) into the script the test page loads, like the
// CDN's bundle.min.js: @sentry/browser 11 no longer ships prebuilt bundles in its npm package.
import * as Sentry from '@sentry/browser';

window.Sentry = Sentry;

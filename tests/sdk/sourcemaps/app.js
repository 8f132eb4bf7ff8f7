// The page's own code for Faultline's source map tests (tests/sourcemaps.rs): bundled together
// with @sentry/browser and minified by ../sourcemaps_client.mjs. Clicking #checkout throws in
// applyDiscountCode; the error is captured and flushed, then window.__faultlineResult is set.
import * as Sentry from '@sentry/browser';

const DISCOUNTS = { WELCOME10: 0.1, SPRING25: 0.25 };

function applyDiscountCode(cart, code) {
  const rate = DISCOUNTS[code];
  if (rate === undefined) {
    throw new Error(`unknown discount code: ${code}`);
  }
  return cart.total * (1 - rate);
}

function checkoutTotal(cart) {
  let total = cart.total;
  for (const code of cart.codes) {
    total = applyDiscountCode({ total }, code);
  }
  return total;
}

const params = new URLSearchParams(window.location.search);
Sentry.init({
  dsn: params.get('dsn'),
  release: params.get('release') || undefined,
  defaultIntegrations: false,
  integrations: [Sentry.dedupeIntegration(), Sentry.linkedErrorsIntegration()],
});

document.addEventListener('DOMContentLoaded', () => {
  document.getElementById('checkout').addEventListener('click', async () => {
    const ids = [];
    try {
      checkoutTotal({ total: 100, codes: ['WELCOME10', 'BOGUS'] });
    } catch (err) {
      ids.push(Sentry.captureException(err));
    }
    const flushed = await Sentry.flush(5000);
    window.__faultlineResult = { ok: flushed, exception_ids: ids, message_ids: [] };
  });
});

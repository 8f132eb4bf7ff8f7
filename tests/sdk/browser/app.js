// The page's own code: reports Faultline's end-to-end scenario with @sentry/browser.
// The DSN comes from the query string (?dsn=...). Clicking #report runs:
// 1. a chained error (`new CheckoutError("checkout failed", { cause })`, collected by the default
//    linkedErrors integration) with user, tags, breadcrumbs, release, environment;
// 2. the same error again, through the same code path;
// 3. two messages differing only in a number ("Order 991 stuck", "Order 992 stuck").
// Errors and messages alternate so the default Dedupe integration keeps the repeated error.
// When done, window.__faultlineResult = {ok, exception_ids, message_ids, statuses, failures, unsent}.
'use strict';

class ConfigError extends Error {
  constructor(message, options) {
    super(message, options);
    this.name = 'ConfigError';
  }
}

class CheckoutError extends Error {
  constructor(message, options) {
    super(message, options);
    this.name = 'CheckoutError';
  }
}

function loadPaymentConfig(gateway) {
  const settings = { currency: 'EUR' };
  if (!(gateway in settings)) {
    throw new ConfigError('missing setting: ' + gateway);
  }
  return settings[gateway];
}

function processCheckout(orderId) {
  try {
    return loadPaymentConfig('payment_gateway');
  } catch (cause) {
    throw new CheckoutError('checkout failed', { cause });
  }
}

function reportCheckoutFailure(orderId) {
  try {
    processCheckout(orderId);
  } catch (err) {
    return Sentry.captureException(err);
  }
  throw new Error('processCheckout did not throw');
}

// What the server answered to each envelope: the real fetch transport, observed.
const statuses = [];
const failures = [];
const sentEventIds = new Set();

Sentry.init({
  dsn: new URLSearchParams(window.location.search).get('dsn'),
  release: 'sdk-test@1.0.0',
  environment: 'e2e',
  debug: true,
  transport: (options) => {
    const inner = Sentry.makeFetchTransport(options);
    return {
      send: async (envelope) => {
        if (envelope[0].event_id) sentEventIds.add(envelope[0].event_id);
        try {
          const response = await inner.send(envelope);
          statuses.push(response.statusCode);
          return response;
        } catch (err) {
          failures.push(String(err));
          throw err;
        }
      },
      flush: (timeout) => inner.flush(timeout),
    };
  },
});

async function runScenario() {
  Sentry.setUser({ id: 'user-42', email: 'jane@example.com', username: 'jane' });
  Sentry.setTag('customer_tier', 'pro');
  Sentry.addBreadcrumb({ category: 'auth', message: 'user logged in', level: 'info' });
  Sentry.addBreadcrumb({ category: 'cart', message: 'added item to cart', level: 'info', data: { sku: 'SKU-1', qty: 2 } });
  Sentry.addBreadcrumb({ category: 'checkout', message: 'checkout started', level: 'warning' });

  const exceptionIds = [];
  const messageIds = [];
  for (const order of [991, 992]) {
    exceptionIds.push(reportCheckoutFailure(1001));
    messageIds.push(Sentry.captureMessage(`Order ${order} stuck`));
  }

  const flushed = await Sentry.flush(5000);
  const bad = statuses.filter((s) => s === undefined || s < 200 || s >= 300);
  const unsent = [...exceptionIds, ...messageIds].filter((id) => !sentEventIds.has(id));
  return {
    ok: flushed && failures.length === 0 && bad.length === 0 && unsent.length === 0,
    flushed,
    exception_ids: exceptionIds,
    message_ids: messageIds,
    statuses,
    failures,
    unsent,
  };
}

document.addEventListener('DOMContentLoaded', () => {
  document.getElementById('report').addEventListener('click', () => {
    document.getElementById('status').textContent = 'reporting';
    runScenario().then(
      (result) => {
        window.__faultlineResult = result;
        document.getElementById('status').textContent = 'done';
      },
      (err) => {
        window.__faultlineResult = { ok: false, failures: [String(err && err.stack ? err.stack : err)] };
        document.getElementById('status').textContent = 'failed';
      },
    );
  });
});

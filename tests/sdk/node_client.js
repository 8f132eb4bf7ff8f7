// Reports Faultline's end-to-end scenario with the real @sentry/node SDK.
//
// Usage: node node_client.js DSN
//
// 1. a chained error (`new CheckoutError("checkout failed", { cause })`, collected by the default
//    linkedErrors integration) with user, tags, breadcrumbs, release `sdk-test@1.0.0`,
//    environment `e2e`;
// 2. the same error again, through the same code path;
// 3. two messages differing only in a number ("Order 991 stuck", "Order 992 stuck").
// Errors and messages alternate, so the default Dedupe integration (which drops an event equal to
// the one just before it) keeps the repeated error, as it would in an app doing other things.
//
// Prints one JSON line on stdout: {"exception_ids": [...], "message_ids": [...], "statuses": [...]}.
// Exits non-zero if an event was not sent, an envelope was not answered with 2xx, or the SDK
// could not flush.
'use strict';

const Sentry = require('@sentry/node');

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

async function main() {
  const dsn = process.argv[2];
  if (!dsn) throw new Error('usage: node node_client.js DSN');

  // What the server answered to each envelope: the real transport, observed.
  const statuses = [];
  const failures = [];
  const sentEventIds = new Set();
  Sentry.init({
    dsn,
    release: 'sdk-test@1.0.0',
    environment: 'e2e',
    debug: true,
    transport: (options) => {
      const inner = Sentry.makeNodeTransport(options);
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

  const flushed = await Sentry.close(10000);
  console.log(JSON.stringify({ exception_ids: exceptionIds, message_ids: messageIds, statuses }));

  const bad = statuses.filter((s) => s === undefined || s < 200 || s >= 300);
  const unsent = [...exceptionIds, ...messageIds].filter((id) => !sentEventIds.has(id));
  if (!flushed || failures.length > 0 || bad.length > 0 || unsent.length > 0) {
    console.error(
      `@sentry/node did not deliver everything: flushed=${flushed} statuses=${JSON.stringify(statuses)} ` +
        `failures=${JSON.stringify(failures)} unsent=${JSON.stringify(unsent)}`,
    );
    process.exitCode = 1;
  }
}

main().catch((err) => {
  console.error(err);
  process.exitCode = 1;
});

"""Reports Faultline's end-to-end scenario with the real sentry-python SDK.

Usage: python3 python_client.py [alert] DSN

1. a chained exception (`raise CheckoutError(...) from ConfigError(...)`) with user, tags,
   breadcrumbs, release `sdk-test@1.0.0`, environment `e2e`;
2. the same exception again, through the same code path;
3. two messages differing only in a number ("Order 991 stuck", "Order 992 stuck").
Errors and messages alternate, as in the JS clients (whose Dedupe integration drops an event
equal to the one just before it).

With `alert` (tests/alerts.rs) it reports only one `PaymentDeclined("card declined")`, raised in
`charge_card`, with tag `browser: Safari 17`, user `buyer-1`, release `shop@2.0.0`, environment
`production`: each run is one more event of the same issue.

Prints one JSON line on stdout: {"exception_ids": [...], "message_ids": [...]}.
Exits non-zero if the SDK logged an error (e.g. an unexpected HTTP status) or could not flush.
"""

import json
import logging
import sys

import sentry_sdk


class ConfigError(Exception):
    """The cause: raised first."""


class CheckoutError(Exception):
    """The outer error: raised while handling ConfigError."""


def load_payment_config(gateway):
    settings = {"currency": "EUR"}
    if gateway not in settings:
        raise ConfigError("missing setting: " + gateway)
    return settings[gateway]


def process_checkout(order_id):
    try:
        return load_payment_config("payment_gateway")
    except ConfigError as exc:
        raise CheckoutError("checkout failed") from exc


def report_checkout_failure(order_id):
    try:
        process_checkout(order_id)
    except CheckoutError as exc:
        return sentry_sdk.capture_exception(exc)
    raise AssertionError("process_checkout did not raise")


class PaymentDeclined(Exception):
    """The error of the `alert` scenario."""


def charge_card(amount):
    raise PaymentDeclined("card declined")


def report_declined_payment():
    try:
        charge_card(42)
    except PaymentDeclined as exc:
        return sentry_sdk.capture_exception(exc)
    raise AssertionError("charge_card did not raise")


class ErrorRecorder(logging.Handler):
    """Collects what the SDK logs at ERROR level (unexpected statuses, transport failures)."""

    def __init__(self):
        super().__init__(level=logging.ERROR)
        self.messages = []

    def emit(self, record):
        self.messages.append(self.format(record))


def alert_scenario(dsn, recorder):
    sentry_sdk.init(dsn=dsn, release="shop@2.0.0", environment="production", debug=True)
    logging.getLogger("sentry_sdk.errors").addHandler(recorder)
    sentry_sdk.set_user({"id": "buyer-1", "email": "buyer@example.com"})
    sentry_sdk.set_tag("browser", "Safari 17")
    exception_ids = [report_declined_payment()]
    sentry_sdk.flush(timeout=10)
    return exception_ids, []


def main():
    dsn = sys.argv[-1]
    recorder = ErrorRecorder()
    if len(sys.argv) > 2 and sys.argv[1] == "alert":
        exception_ids, message_ids = alert_scenario(dsn, recorder)
    else:
        exception_ids, message_ids = checkout_scenario(dsn, recorder)
    print(json.dumps({"exception_ids": exception_ids, "message_ids": message_ids}), flush=True)
    if None in exception_ids or None in message_ids:
        print("sentry-sdk dropped an event before sending", file=sys.stderr)
        return 1
    if recorder.messages:
        print("sentry-sdk reported errors:\n" + "\n".join(recorder.messages), file=sys.stderr)
        return 1
    return 0


def checkout_scenario(dsn, recorder):
    sentry_sdk.init(
        dsn=dsn,
        release="sdk-test@1.0.0",
        environment="e2e",
        debug=True,
    )
    logging.getLogger("sentry_sdk.errors").addHandler(recorder)

    sentry_sdk.set_user({"id": "user-42", "email": "jane@example.com", "username": "jane"})
    sentry_sdk.set_tag("customer_tier", "pro")
    sentry_sdk.add_breadcrumb(category="auth", message="user logged in", level="info")
    sentry_sdk.add_breadcrumb(
        category="cart", message="added item to cart", level="info", data={"sku": "SKU-1", "qty": 2}
    )
    sentry_sdk.add_breadcrumb(category="checkout", message="checkout started", level="warning")

    exception_ids = []
    message_ids = []
    for order in (991, 992):
        exception_ids.append(report_checkout_failure(1001))
        message_ids.append(sentry_sdk.capture_message(f"Order {order} stuck"))
    sentry_sdk.flush(timeout=10)
    return exception_ids, message_ids


if __name__ == "__main__":
    sys.exit(main())

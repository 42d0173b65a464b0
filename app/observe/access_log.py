"""The first exchange observer: one log line per proxied request, when it ends.

``A: POST /v1/chat/completions 200, 1234 bytes in 0.532s (queued 0.401s, loading 0.380s)``:
which model, what was asked, how it was answered, how long it took and
where the time went; the outcome is named when the answer did not reach the
client whole (``client gone``, ``upstream error``) and the reason when the
proxy refused it.
"""

from __future__ import annotations

import logging

from app.observe.exchange import Exchange, ExchangeObserver, Outcome

log = logging.getLogger("llama-swap.proxy")

WORTH_SAYING = 0.001  # seconds of queueing or loading below which the line leaves them out


def access_line(exchange: Exchange) -> str:
    status = "-" if exchange.status is None else str(exchange.status)
    line = f"{exchange.model}: {exchange.method} {exchange.path} {status}, {exchange.response_bytes} bytes"
    if exchange.total is not None:
        line += f" in {exchange.total:.3f}s"
    waits = []
    if exchange.queued is not None and exchange.queued >= WORTH_SAYING:
        waits.append(f"queued {exchange.queued:.3f}s")
    if exchange.loading is not None and exchange.loading >= WORTH_SAYING:
        waits.append(f"loading {exchange.loading:.3f}s")
    if waits:
        line += f" ({', '.join(waits)})"
    if exchange.outcome in (Outcome.CLIENT_GONE, Outcome.UPSTREAM_ERROR, Outcome.CANCELLED):
        line += f"; {exchange.outcome.value.replace('_', ' ')}"
    if exchange.outcome is Outcome.REFUSED and exchange.error:
        line += f": {exchange.error}"
    return line


class AccessLog(ExchangeObserver):
    def on_end(self, exchange: Exchange) -> None:
        failed = exchange.outcome is Outcome.UPSTREAM_ERROR or (
            exchange.outcome is Outcome.REFUSED and (exchange.status or 500) >= 500)
        level = logging.WARNING if failed else logging.INFO
        if log.isEnabledFor(level):  # the line is built only when it is written
            log.log(level, "%s", access_line(exchange))

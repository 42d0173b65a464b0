"""Benchmarks of the proxy against the baseline of talking to the same upstream directly.

``python -m bench`` (``make bench``) runs them all; ``python -m bench NAME``
runs one; ``--quick`` runs a shorter smoke-test version. Modules:

* ``harness``   - processes (server, upstream), HTTP helpers, statistics, tables;
* ``overhead``  - added latency of a small non-streamed completion (1 and 32
  clients, and against a Nagle-afflicted ``--split-writes`` upstream);
* ``streaming`` - chunks per second of one long SSE stream;
* ``first_event`` - time to the first SSE event of a stream (and to its headers);
* ``swap``      - cold-start time to first byte minus the upstream's own start time;
* ``churn``     - many models swapped under a mixed load;
* ``observers`` - every observer on vs none (overhead, streaming), and 1,000
  live ``/api/events`` clients (memory, overhead while connected).
"""

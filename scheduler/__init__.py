"""The core: the owning router loop, the FIFO scheduler, the swappers and the process owners.

``router`` (one greenlet, one mailbox: all scheduling state) runs ``fifo``
(a pure state machine) with a ``swappers`` policy and asks one
``process.UpstreamProcess`` owner per model to start and stop its child
(``launcher``: the operating system's side; ``health``: when to poll).
``clock`` is the only source of time, ``events`` what the owners publish,
``errors`` how a request can end unserved, ``state`` a process's states.

No Flask, no requests, no HTTP status codes: this package takes plain data
(model ids, process specs, policies) that ``app.runtime`` builds from the
config, and its outside world (launcher, health probe, clock, publish) as
arguments, so every owner is unit-tested with fakes.
"""

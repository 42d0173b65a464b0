"""The simulated llama.cpp ``llama-server``: the upstream of the demo config, the tests and the benchmarks.

Stdlib only and independent of ``app``: ``python -m simulator --port P``
starts in a few tens of milliseconds. ``simulator.server`` owns the HTTP side
and the process-level faults; ``simulator.apis`` the answers beyond
completions.
"""

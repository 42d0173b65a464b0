"""The core: processes, the owning router loop, the FIFO scheduler and swappers.

Nothing in this package imports Flask or reads YAML: it takes plain data
(model ids, process specs, policies) built by ``app.config``.
"""

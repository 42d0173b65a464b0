"""What a requested name means right now: profile pins, aliases, selectors, peers, and the listing.

Pure over the config and a ``Live`` view of the running models: ``resolve``
walks llama-swap's order to a local model or a peer's (``peers``), picking
among a selector's targets with ``selectors``; ``listing`` renders the
``/v1/models`` records. Nothing here sends a request or waits.
"""

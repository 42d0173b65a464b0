"""Moving one request to its upstream and its answer back.

``body`` reads what the client sent (where it names its model, size limits)
and builds the body sent upstream (``filters``); ``grants`` holds every kind
of grant and the one wait for the router's; ``forward`` streams both ways
and tells the exchange as it goes (``batching`` groups chunks that piled up,
``hangup`` notices a client that left); ``loading`` is the loading-state
stream; ``peer`` relays to a peer, ``websocket`` relays websockets;
``transport`` is the pooled HTTP to upstreams and the only code that knows
urllib3's insides. Nothing here imports ``app.routes``.
"""

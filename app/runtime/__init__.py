"""The running server: everything built from one config, and the app-wide parts that outlive reloads.

``factory.create_app`` builds the Flask app; ``build`` turns a config into
the scheduler's objects (processes, swapper, router) and a ``Server``;
``server`` holds what views reach (``current()``); ``reload`` applies the
config again, by difference, when its files change; ``lastgood`` keeps the
last config that loaded for a respawned worker; ``preload`` loads
``hooks.on_startup.preload``; ``log_setup`` routes log lines; ``live``
answers name resolution's questions about what is running.
"""

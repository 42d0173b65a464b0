"""gunicorn settings: exactly one gevent worker, and the shutdown order.

The scheduler's state lives in one process, so there is one worker. Teardown,
in order:
1. SIGTERM reaches the worker: it ends the live log streams, answers new
   requests 503 and gives those already in up to ``LLAMA_SWAP_SHUTDOWN_GRACE``
   seconds (5) to finish, then stops every upstream (graceful, then forced
   after each model's unloadTimeout), which cuts what is left; then the
   app-wide watchers (the performance sampler, NVML). SIGINT and SIGQUIT
   (gunicorn's quick shutdown: Ctrl-C) skip the grace. The master's
   ``graceful_timeout`` is set from the config to cover the grace and the
   slowest unloadTimeout (``app/__main__.py``).
2. The worker exits as soon as that is done (a moment for the last answers to
   go out), not at gunicorn's next one-second tick of its graceful wait, and
   without the interpreter's teardown (``app/quick_exit.py``); the master
   (``app/arbiter.py``) leaves as soon as it sees the worker gone: a restart
   takes what stopping the upstreams takes. On gunicorn's own exit paths
   ``worker_exit`` stops anything still running (idempotent).
3. If the master is SIGKILLed instead, the kernel SIGKILLs the worker
   (parent-death signal set in ``post_fork``), whose upstreams die the same way.
"""

import ctypes
import os
import signal
import sys

bind = os.environ.get("LLAMA_SWAP_BIND", "0.0.0.0:8080")
worker_class = "app.worker.GeventWorker"  # gevent's, closing a refused connection without a reset
workers = 1
limit_request_line = 8190  # gunicorn's most (its default is 4094); a longer URL is a 414
worker_connections = 10000  # /api/events subscribers hold one each, for hours
timeout = 120  # heartbeat of a stuck worker, not a request timeout (gevent requests can stream for hours)
graceful_timeout = 10
keepalive = 75  # seconds an idle client connection is kept (nginx's default): a shorter one races clients reusing it
accesslog = None
loglevel = "warning"

_libc = ctypes.CDLL(None, use_errno=True)  # the C library is already in the process: no ldconfig run to find it
_PR_SET_PDEATHSIG = 1


def _close_server(worker, grace: float = 0.0, hurry: bool = False) -> None:
    wsgi_app = getattr(worker, "wsgi", None)
    if hasattr(wsgi_app, "extensions"):  # built (a worker that failed to load has none)
        from app.runtime.shutdown import close_app

        close_app(wsgi_app, grace, hurry)  # live feeds end at once: gunicorn's graceful exit need not wait


EXIT_GRACE = 0.05  # seconds for the last answers to go out once everything is stopped


def _close_and_exit(worker) -> None:
    import gevent

    from app import shutdown_grace
    from app.quick_exit import exit_now

    _close_server(worker, shutdown_grace())  # requests already in may finish; new ones get 503
    gevent.sleep(EXIT_GRACE)
    if not getattr(worker, "llama_swap_exiting", False):  # gunicorn's own exit is not already under way
        exit_now(0)  # not at gunicorn's next 1 s tick, and without the interpreter's teardown


def pre_fork(server, worker):
    from app.proctitle import retitle

    retitle()  # the master, after gunicorn's own title


def on_starting(server):
    if server.cfg.workers != 1:  # each worker would run its own scheduler and its own copies of the models
        print(f"llama-swap: gunicorn with {server.cfg.workers} workers: this server keeps its models and their "
              "scheduler in one worker process; run it with exactly one (-w 1). See docs/DEPLOY.md.",
              file=sys.stderr, flush=True)
        sys.exit(1)


def post_fork(server, worker):
    _libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != server.pid:
        os._exit(1)
    from app.proctitle import retitle

    retitle("worker")


def post_worker_init(worker):
    from gunicorn.workers.ggevent import GeventWorker

    if not isinstance(worker, GeventWorker):  # -k sync/gthread with this file: worker_exit stops the server
        return
    import gevent

    default_exit = worker.handle_exit

    def handle_term(sig, frame):
        default_exit(sig, frame)
        gevent.spawn(_close_and_exit, worker)

    signal.signal(signal.SIGTERM, handle_term)


def worker_int(worker):
    # Already quitting: a second INT/QUIT (Ctrl-C reaches master and worker,
    # then the master sends QUIT) would re-run gunicorn's quit handler during
    # interpreter shutdown and print a SystemExit traceback.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGQUIT, signal.SIG_IGN)
    _close_server(worker, hurry=True)  # gunicorn's quick shutdown: no grace, and a SIGTERM's grace ends now


def worker_exit(server, worker):
    worker.llama_swap_exiting = True  # no SystemExit thrown into this any more
    _close_server(worker)

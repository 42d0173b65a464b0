"""What kind of WSGI host loaded us: gevent and patched, gevent but unpatched, threaded, or refused (and why).

``wsgi.py`` asks first, before anything else of ours is imported (so this
module imports nothing heavy: not gevent, Flask or requests):

- **patched**: gevent's monkey-patching is in force (gunicorn ``-k gevent``,
  ``python -m app``'s worker, uWSGI ``--gevent-early-monkey-patch``, a
  ``gevent.pywsgi`` script after ``patch_all``). The scheduler shares the
  requests' hub; nothing is added.
- **unpatched**: a gevent host that has not patched (uWSGI ``--gevent``
  without ``--gevent-early-monkey-patch``: its ``--gevent-monkey-patch``
  patches only after the app is loaded; a ``gevent.pywsgi`` script without
  ``patch_all``). ``prepare`` patches it then and there, with a log line:
  nothing blocking has been imported yet and no other thread runs.
- **threaded**: an OS-thread host (waitress, ``flask run``, gunicorn
  ``sync``/``gthread``, uWSGI ``--threads``, mod_wsgi). Patching under
  running or future host threads is not safe, so nothing is patched: the
  thread bridge (``create_app``) runs the scheduler on a hub of its own.
- **refused**: a host this server cannot serve correctly; the reason names
  the host and how to run it, and ``wsgi.py`` exits with it.

``needs_bridge`` is the one question ``create_app`` asks afterwards.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from typing import Any, Mapping

PATCHED = "gevent, patched"
UNPATCHED = "gevent, not patched"
THREADED = "threaded"
REFUSED = "refused"

DOCS = "see docs/DEPLOY.md"
# The exit status of a refusal: gunicorn's "worker failed to boot", on which its
# master stops instead of respawning the worker; any other host just exits with it.
REFUSED_EXIT = 3
THREADS_BY_DEFAULT = (2, 0, 27)  # uWSGI's --enable-threads is on by default from this version
ONE_AT_A_TIME = "one request at a time: a stream (a chat, the UI's event feed) holds every other request until it ends ("


@dataclass(frozen=True)
class Host:
    """The host that loaded us: a name a user recognises, its kind, and why that kind."""

    name: str
    kind: str
    reason: str


class HostRefused(RuntimeError):
    """This host cannot serve the app correctly; the message says how to run it instead."""


def is_patched(modules: Mapping[str, Any] | None = None) -> bool:
    """Whether gevent has monkey-patched this process (its sockets cooperate with the hub)."""
    monkey = (sys.modules if modules is None else modules).get("gevent.monkey")
    return monkey is not None and monkey.is_module_patched("socket")


def needs_bridge() -> bool:
    """Whether ``create_app`` must run the server on a gevent hub in a thread of its own."""
    return not is_patched()


def _number(value: Any) -> int:
    if isinstance(value, list):  # an option given twice: the last one counts
        value = value[-1] if value else 0
    if isinstance(value, bytes):
        value = value.decode(errors="replace")
    if value is True:
        return 1
    try:
        return int(value or 0)
    except (TypeError, ValueError):
        return 0


def _options(uwsgi: Any) -> dict[str, Any]:
    """uWSGI's options by name (its keys are bytes in some versions)."""
    return {(k.decode() if isinstance(k, bytes) else k): v for k, v in dict(getattr(uwsgi, "opt", {})).items()}


def _uwsgi(uwsgi: Any, patched: bool, threads: int) -> Host:
    opt = _options(uwsgi)
    processes = max(_number(opt.get("processes")), _number(opt.get("workers")), _number(getattr(uwsgi, "numproc", 1)))
    if processes > 1:
        return Host("uWSGI", REFUSED,
                    f"uWSGI with {processes} worker processes: llama-swap keeps its models and their scheduler in one "
                    "process; run it with one (--processes 1, the default); " + DOCS)
    if opt.get("master") and not (opt.get("lazy-apps") or opt.get("lazy")):
        return Host("uWSGI --master", REFUSED,
                    "uWSGI --master without --lazy-apps loads the app in the master and forks the worker from it: "
                    "the scheduler would be built in the wrong process; add --lazy-apps (and --die-on-term, or "
                    "SIGTERM reloads instead of stopping), or run without --master; " + DOCS)
    if _number(opt.get("gevent")) or (_number(opt.get("async")) and opt.get("loop") in (b"gevent", "gevent")):
        if patched:
            return Host("uWSGI --gevent", PATCHED, "gevent-patched before the app loaded")
        if threads > 1:
            return Host("uWSGI --gevent", REFUSED,
                        f"uWSGI --gevent has not patched with gevent and {threads} threads already run, so patching "
                        "now is not safe; add --gevent-early-monkey-patch; " + DOCS)
        return Host("uWSGI --gevent", UNPATCHED,
                    "uWSGI --gevent loads the app before --gevent-monkey-patch patches (and without it, never)")
    if _number(opt.get("threads")) > 1:
        return Host(f"uWSGI --threads {_number(opt.get('threads'))}", THREADED, "requests run on uWSGI's threads")
    version = tuple(getattr(uwsgi, "version_info", ())[:3])
    if "threads" in opt or opt.get("enable-threads") or version >= THREADS_BY_DEFAULT:
        return Host("uWSGI", THREADED, ONE_AT_A_TIME + "uWSGI's one thread): add --threads 8 or --gevent 1000")
    return Host("uWSGI", REFUSED,
                f"uWSGI {'.'.join(map(str, version))} without --enable-threads and without --gevent never lets "
                "another Python thread run between requests: a model's health checks and ttl would never run; run "
                "uWSGI with --gevent 1000 --gevent-early-monkey-patch (or --threads 8); " + DOCS)


def _gunicorn(modules: Mapping[str, Any], patched: bool, stack: list[str]) -> Host:
    in_master = any(f.endswith("gunicorn/arbiter.py") for f in stack) and \
        not any("gunicorn/workers/" in f for f in stack)
    if in_master:
        return Host("gunicorn --preload", REFUSED,
                    "gunicorn --preload builds the app in the master and forks the worker from it: the scheduler "
                    "would be built in the wrong process (and before gevent patches); drop --preload; " + DOCS)
    if "gunicorn.workers.geventlet" in modules:
        return Host("gunicorn -k eventlet", REFUSED, "eventlet is not gevent: run gunicorn -k gevent; " + DOCS)
    if patched:
        return Host("gunicorn -k gevent", PATCHED, "gunicorn's gevent worker patched before loading the app")
    if "gunicorn.workers.gthread" in modules:
        return Host("gunicorn -k gthread", THREADED, "requests run on the worker's threads")
    return Host("gunicorn -k sync", THREADED,
                ONE_AT_A_TIME + "gunicorn's sync worker), and one longer than --timeout (30 s) is killed with its "
                "worker and every upstream: use -k gthread --threads 8 or -k gevent")


def detect(modules: Mapping[str, Any] | None = None, threads: int | None = None,
           stack: list[str] | None = None) -> Host:
    """The host that loaded us, from ``sys.modules``, the number of running threads and the call stack.

    (Each can be given, for tests.)
    """
    modules = sys.modules if modules is None else modules
    if threads is None:
        threading = modules.get("threading")
        threads = threading.active_count() if threading is not None else 1
    if stack is None:
        frame, stack = sys._getframe(), []
        while frame is not None:
            stack.append(frame.f_code.co_filename.replace("\\", "/"))
            frame = frame.f_back
    patched = is_patched(modules)
    if "uwsgi" in modules:
        return _uwsgi(modules["uwsgi"], patched, threads)
    if "gunicorn" in modules:
        return _gunicorn(modules, patched, stack)
    if patched:
        return Host("gevent", PATCHED, "gevent's monkey-patching is in force")
    if "gevent.pywsgi" in modules or "gevent.baseserver" in modules:
        if threads > 1:
            return Host("gevent.pywsgi", REFUSED,
                        f"a gevent server without gevent's patching, and {threads} threads already run, so patching "
                        "now is not safe; call gevent.monkey.patch_all() first in the script that starts it; " + DOCS)
        return Host("gevent.pywsgi", UNPATCHED, "a gevent server imported without gevent.monkey.patch_all()")
    for module, name in (("mod_wsgi", "mod_wsgi"), ("waitress", "waitress"), ("werkzeug.serving", "flask run")):
        if module in modules:
            return Host(name, THREADED, "requests run on the host's threads")
    return Host("a WSGI host", THREADED, "no gevent patching: requests are taken to run on the host's threads")


def prepare(host: Host | None = None) -> Host:
    """``wsgi.py``'s first step: patch an unpatched gevent host, or refuse a host we cannot serve.

    Returns the host as it is now (an unpatched one comes back patched); raises
    ``HostRefused`` with the message to print.
    """
    host = detect() if host is None else host
    if host.kind == REFUSED:
        raise HostRefused(f"llama-swap cannot run in {host.name}: {host.reason}")
    if host.kind == UNPATCHED:
        from gevent import monkey

        monkey.patch_all()
        print(f"llama-swap: {host.name}: {host.reason}; wsgi.py patched it with gevent.monkey.patch_all() "
              "before importing anything else", file=sys.stderr, flush=True)
        return Host(host.name, PATCHED, "patched by wsgi.py")
    if host.kind == THREADED:
        print(f"llama-swap: {host.name} is a threaded host ({host.reason}); not patching with gevent",
              file=sys.stderr, flush=True)
    return host


UWSGI_FAILED_APP = 22  # uWSGI's exit status for "the app did not load", which --need-app acts on


def stop_the_host(modules: Mapping[str, Any] | None = None) -> None:
    """After a refusal in a worker: without ``--need-app``, uWSGI's master respawns a worker that exits while
    loading the app, for ever, so ask it to stop the whole instance and leave at once. With ``--need-app``
    the master ends the instance itself (status 22) when the app fails to load; other hosts stop on the
    worker's exit."""
    uwsgi = (sys.modules if modules is None else modules).get("uwsgi")
    if uwsgi is None or uwsgi.masterpid() in (0, os.getpid()):
        return
    if _options(uwsgi).get("need-app"):
        os._exit(UWSGI_FAILED_APP)  # the status of a worker whose app did not load: the master ends the instance
        return
    try:
        uwsgi.stop()
    except KeyboardInterrupt:  # the master's stop reaches this worker as SIGINT at once
        pass
    os._exit(REFUSED_EXIT)

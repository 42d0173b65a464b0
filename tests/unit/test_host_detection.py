"""Which WSGI host loaded us (app.runtime.hosts), from fakes of uWSGI's options, sys.modules and the thread count."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from app.runtime import hosts
from app.runtime.hosts import PATCHED, REFUSED, THREADED, UNPATCHED, detect

MODULE = object()  # a module that is merely imported
WORKER_STACK = ["/venv/gunicorn/arbiter.py", "/venv/gunicorn/workers/base.py", "/srv/wsgi.py"]


def monkey(patched: bool) -> SimpleNamespace:
    return SimpleNamespace(is_module_patched=lambda name: patched and name == "socket")


def uwsgi(version: tuple = (2, 0, 31), numproc: int = 1, **options) -> dict:
    opt = {name.replace("_", "-"): value for name, value in options.items()}
    return {"uwsgi": SimpleNamespace(opt=opt, numproc=numproc, version_info=(*version, 0, b""))}


def host(modules: dict, threads: int = 1, stack: list[str] | None = None) -> hosts.Host:
    return detect(modules, threads=threads, stack=stack or ["/srv/wsgi.py"])


@pytest.mark.parametrize("flags, kind", [
    ({"gevent": b"100"}, UNPATCHED),  # --gevent-monkey-patch patches only after the app is loaded
    ({"gevent": b"100", "gevent_monkey_patch": True}, UNPATCHED),
    ({"async": b"100", "loop": b"gevent"}, UNPATCHED),
    ({"threads": b"4"}, THREADED),
    ({}, THREADED),  # uWSGI 2.0.27 and later enable Python threads by default
    ({"master": True, "lazy_apps": True, "threads": b"4"}, THREADED),
])
def test_uwsgi_modes(flags, kind):
    assert host(uwsgi(**flags)).kind == kind


def test_uwsgi_gevent_early_monkey_patch_is_patched_before_wsgi_py():
    found = host({**uwsgi(gevent=b"100", gevent_early_monkey_patch=True), "gevent.monkey": monkey(True)})
    assert (found.name, found.kind) == ("uWSGI --gevent", PATCHED)


def test_uwsgi_gevent_unpatched_with_threads_already_running_is_refused_not_patched():
    found = host(uwsgi(gevent=b"100"), threads=2)
    assert found.kind == REFUSED and "--gevent-early-monkey-patch" in found.reason


def test_old_uwsgi_without_threads_or_gevent_is_refused_saying_how_to_run_it():
    found = host(uwsgi(version=(2, 0, 26)))
    assert found.kind == REFUSED
    assert "--gevent 1000" in found.reason and "--threads" in found.reason and "docs/DEPLOY.md" in found.reason
    assert host(uwsgi(version=(2, 0, 26), enable_threads=True)).kind == THREADED


def test_uwsgi_one_thread_is_served_but_says_it_serves_one_request_at_a_time():
    assert "one request at a time" in host(uwsgi()).reason


@pytest.mark.parametrize("modules", [uwsgi(processes=b"2", lazy_apps=True, master=True), uwsgi(numproc=3)])
def test_uwsgi_with_several_worker_processes_is_refused(modules):
    found = host(modules)
    assert found.kind == REFUSED and "--processes 1" in found.reason


def test_uwsgi_master_without_lazy_apps_is_refused_since_the_app_would_be_built_in_the_master():
    found = host(uwsgi(master=True, threads=b"4"))
    assert found.kind == REFUSED and "--lazy-apps" in found.reason and "--die-on-term" in found.reason


def test_uwsgi_option_lists_and_str_keys_are_read():
    assert host(uwsgi(threads=[b"2", b"8"])).name == "uWSGI --threads 8"


@pytest.mark.parametrize("worker, patched, kind, name", [
    ("gunicorn.workers.ggevent", True, PATCHED, "gunicorn -k gevent"),
    ("gunicorn.workers.gthread", False, THREADED, "gunicorn -k gthread"),
    ("gunicorn.workers.sync", False, THREADED, "gunicorn -k sync"),
    ("gunicorn.workers.geventlet", False, REFUSED, "gunicorn -k eventlet"),
])
def test_gunicorn_workers(worker, patched, kind, name):
    found = host({"gunicorn": MODULE, worker: MODULE, "gevent.monkey": monkey(patched)}, stack=WORKER_STACK)
    assert (found.kind, found.name) == (kind, name)


def test_gunicorn_sync_says_it_serves_one_request_at_a_time():
    assert "one request at a time" in host({"gunicorn": MODULE}, stack=WORKER_STACK).reason


def test_gunicorn_preload_is_refused_since_the_app_would_be_built_in_the_master():
    found = host({"gunicorn": MODULE, "gunicorn.workers.ggevent": MODULE, "gevent.pywsgi": MODULE},
                 stack=["/venv/gunicorn/arbiter.py", "/srv/wsgi.py"])
    assert found.kind == REFUSED and "--preload" in found.reason


def test_pywsgi_without_patch_all_is_patched_and_after_patch_all_left_alone():
    assert host({"gevent.pywsgi": MODULE}).kind == UNPATCHED
    assert host({"gevent.pywsgi": MODULE, "gevent.monkey": monkey(True)}).kind == PATCHED


def test_pywsgi_without_patch_all_and_threads_already_running_is_refused_not_patched():
    found = host({"gevent.pywsgi": MODULE}, threads=3)
    assert found.kind == REFUSED and "patch_all()" in found.reason


@pytest.mark.parametrize("module, name", [("waitress", "waitress"), ("werkzeug.serving", "flask run"),
                                          ("mod_wsgi", "mod_wsgi"), ("json", "a WSGI host")])
def test_thread_hosts_are_threaded(module, name):
    assert (host({module: MODULE}).kind, host({module: MODULE}).name) == (THREADED, name)


def test_only_an_unpatched_process_needs_the_bridge(monkeypatch):
    monkeypatch.setitem(__import__("sys").modules, "gevent.monkey", monkey(False))
    assert hosts.needs_bridge()
    monkeypatch.setitem(__import__("sys").modules, "gevent.monkey", monkey(True))
    assert not hosts.needs_bridge()


def test_prepare_refuses_with_the_host_and_how_to_run_it():
    with pytest.raises(hosts.HostRefused, match=r"llama-swap cannot run in uWSGI: .*--processes 1"):
        hosts.prepare(host(uwsgi(processes=b"2")))


def test_prepare_leaves_a_patched_host_alone_and_says_a_threaded_one_is_not_patched(capsys):
    patched = hosts.Host("gunicorn -k gevent", PATCHED, "")
    assert hosts.prepare(patched) is patched
    assert capsys.readouterr().err == ""
    hosts.prepare(hosts.Host("waitress", THREADED, "requests run on the host's threads"))
    assert "waitress is a threaded host" in capsys.readouterr().err


def test_stop_the_host_asks_only_a_uwsgi_master_to_stop(monkeypatch):
    stopped = []
    hosts.stop_the_host({})  # not uWSGI: nothing to do
    hosts.stop_the_host({"uwsgi": SimpleNamespace(masterpid=lambda: 0, stop=lambda: stopped.append(1))})
    assert stopped == []  # no master: the worker's own exit ends it
    exits = []
    monkeypatch.setattr(hosts.os, "_exit", exits.append)
    hosts.stop_the_host({"uwsgi": SimpleNamespace(masterpid=lambda: 1, opt={"need-app": True},
                                                  stop=lambda: stopped.append(1))})
    assert stopped == [] and exits[0] == 22  # --need-app: the master ends the instance on a worker's status 22

"""Our helper scripts run with a Python interpreter even where ``sys.executable`` names the embedding host."""

import subprocess
import sys

import pytest

from scheduler import interpreter


@pytest.fixture
def fresh():
    interpreter.python_executable.cache_clear()
    yield
    interpreter.python_executable.cache_clear()


def test_sys_executable_is_used_when_it_is_python(fresh):
    assert interpreter.python_executable() == sys.executable


def test_an_embedding_host_s_executable_is_passed_over_for_a_python_of_this_version(fresh, monkeypatch, tmp_path):
    host = tmp_path / "uwsgi"
    host.write_text("#!/bin/sh\nexit 1\n")
    host.chmod(0o755)
    monkeypatch.setattr(sys, "executable", str(host))
    found = interpreter.python_executable()
    assert found != str(host)
    ran = subprocess.run([found, "-I", "-c", "import sys; print(sys.version_info[:2])"],
                         capture_output=True, text=True, timeout=30)
    assert ran.stdout.strip() == str(sys.version_info[:2])

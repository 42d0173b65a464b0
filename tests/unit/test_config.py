"""Loading a llama-swap config: the reference files, defaults, errors and warnings."""

from __future__ import annotations

import dataclasses
import textwrap
from pathlib import Path

import pytest

from app.config import Config, ConfigError, load_config, load_config_text

REFERENCE = Path(__file__).resolve().parents[1] / "data" / "llama-swap"
EXAMPLE_ENV = {"HOME": "/home/tester", "API_KEY_1": "sk-one", "API_KEY_2": "sk-two",
               "OPENROUTER_API_KEY": "sk-or"}


def load(text: str) -> Config:
    return load_config_text(textwrap.dedent(text))


@pytest.fixture
def example_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in EXAMPLE_ENV.items():
        monkeypatch.setenv(name, value)


# -- the reference files ------------------------------------------------------

def test_the_reference_example_loads_unchanged(example_env: None) -> None:
    config = load_config(str(REFERENCE / "config.example.yaml"))

    assert list(config.models) == ["gpt-oss-120b", "unlisted-model", "docker-llama"]
    gpt = config.models["gpt-oss-120b"]
    assert gpt.cmd == ("/path/to/llama-server/llama-server-ec9e0301", "--port", "10002",
                       "--model", "path/to/gpt-oss-120B.gguf", "--ctx-size", "16384",
                       "--temperature", "0.7")
    assert gpt.proxy == "http://127.0.0.1:8999"
    assert gpt.check_endpoint == "/custom-endpoint"
    assert gpt.env == (("CUDA_VISIBLE_DEVICES", "0,1,2"),)
    assert gpt.ttl == 60 and gpt.unload_timeout == 10
    assert gpt.ignore_websockets is True
    assert gpt.send_loading_state is False
    assert gpt.filters.strip_params == ("temperature", "top_k", "top_p")
    assert gpt.timeouts.keepalive == 0 and gpt.timeouts.response_header == 60
    assert gpt.capabilities["context"] == 32000 and gpt.capabilities["tools"] is True
    assert config.models["docker-llama"].cmd_stop == ("docker", "stop", "docker-llama")
    assert config.api_keys == ("sk-hunter2", config.api_keys[1], "sk-one", "sk-two")
    assert config.peers["openrouter"].api_key == "sk-or"
    assert config.health_check_timeout == 500
    assert config.performance.every == 15
    assert config.router_use == "group"
    assert [g.name for g in config.groups] == ["group1", "group2", "forever"]
    assert config.matrix is None  # use: group, so the matrix is ignored (as Go does)
    assert any("matrix" in w for w in config.warnings)
    assert config.selectors["llama"].spillover == 4
    assert config.profiles["coding"].pins["image-gen"] is None


def test_the_older_seed_example_with_top_level_matrix_loads(example_env: None) -> None:
    config = load_config(str(REFERENCE / "config.example.seed-790.yaml"))

    assert config.router_use == "matrix"
    assert config.matrix.vars["L"] == "llama-70B"
    assert [s.members for s in config.matrix.sets if s.name == "full"] == [frozenset({"llama-70B"})]
    assert config.groups == ()
    assert {m.id: m.port for m in config.models.values()} == {
        "docker-llama": 10001, "gpt-oss-120b": 10002, "qwen-unlisted": 10003}


def test_illustrative_group_members_are_dropped_with_a_warning(example_env: None) -> None:
    config = load_config(str(REFERENCE / "config.example.yaml"))

    group2 = next(g for g in config.groups if g.name == "group2")
    assert group2.members == ("docker-llama",)
    assert ("routing.router.settings.groups.group2.members: 'modelA' is not a defined "
            "model (ignored)") in config.warnings


# -- defaults -------------------------------------------------------------------

def test_a_minimal_config_gets_llama_swap_defaults() -> None:
    config = load("""
        models:
          llama:
            cmd: llama-server --port ${PORT}
    """)

    model = config.models["llama"]
    assert model.cmd == ("llama-server", "--port", "5800")
    assert model.proxy == "http://localhost:5800"
    assert model.port == 5800
    assert model.check_endpoint == "/health"
    assert model.concurrency_limit == 10
    assert model.ttl == 0 and model.unload_timeout == 10
    assert model.send_loading_state is None
    assert model.capabilities is None
    assert dataclasses.astuple(model.timeouts) == (30, 30, 0, 10, 1, 90)
    assert config.health_check_timeout == 120
    assert config.log_level == "info" and config.log_to_stdout == "proxy"
    assert config.performance.every == 5
    assert config.ui_session_headers == ("X-Session-ID", "X-Litellm-Session-Id")
    assert config.upstream_ignore_paths == (r".*\.(js|json|css|png|gif|jpg|jpeg|ico|txt)$",)
    assert config.warnings == ()


def test_an_empty_file_is_a_config_without_models() -> None:
    assert load("").models == {}


def test_health_check_timeout_below_fifteen_seconds_is_raised_to_fifteen() -> None:
    assert load("healthCheckTimeout: 3\n").health_check_timeout == 15


def test_model_ttl_and_unload_timeout_fall_back_to_the_globals() -> None:
    config = load("""
        globalTTL: 300
        unloadTimeout: 20
        models:
          inherits: {cmd: a, proxy: "http://h:1"}
          minus-one: {cmd: a, proxy: "http://h:1", ttl: -1, unloadTimeout: 0}
          never: {cmd: a, proxy: "http://h:1", ttl: 0}
          own: {cmd: a, proxy: "http://h:1", ttl: 60, unloadTimeout: 3}
    """)

    ttls = {m.id: (m.ttl, m.unload_timeout) for m in config.models.values()}
    assert ttls == {"inherits": (300, 20), "minus-one": (300, 20), "never": (0, 20),
                    "own": (60, 3)}


def test_a_ttl_below_minus_one_is_an_error() -> None:
    with pytest.raises(ConfigError, match=r"^models\.llama\.ttl: must be >= 0"):
        load("models: {llama: {cmd: a, proxy: 'http://h:1', ttl: -5}}")


def test_check_endpoint_none_disables_health_checks() -> None:
    config = load("""
        models:
          a: {cmd: x, proxy: "http://h:1", checkEndpoint: none}
          b: {cmd: x, proxy: "http://h:1", checkEndpoint: None}
          c: {cmd: x, proxy: "http://h:1", checkEndpoint: ""}
    """)

    assert [m.check_endpoint for m in config.models.values()] == [None, None, "/health"]


def test_concurrency_limit_zero_means_the_default_of_ten() -> None:
    config = load("models: {a: {cmd: x, proxy: 'http://h:1', concurrencyLimit: 0},"
                  " b: {cmd: x, proxy: 'http://h:1', concurrencyLimit: 2}}")

    assert [m.concurrency_limit for m in config.models.values()] == [10, 2]


# -- commands -------------------------------------------------------------------

def test_a_multi_line_cmd_drops_comment_lines_and_keeps_quoted_arguments() -> None:
    config = load("""
        models:
          llama:
            cmd: |
              # the server binary
              /opt/llama-server --port ${PORT}
                # an indented comment
              --alias "Llama 3 (8B)" --chat-template '{{ x }}' \\
              --ctx-size 8192
    """)

    assert config.models["llama"].cmd == (
        "/opt/llama-server", "--port", "5800", "--alias", "Llama 3 (8B)",
        "--chat-template", "{{ x }}", "--ctx-size", "8192")


def test_cmd_stop_keeps_the_pid_placeholder_for_stop_time() -> None:
    config = load("""
        models:
          llama:
            cmd: server --port ${PORT}
            cmdStop: kill -TERM ${PID}
    """)

    assert config.models["llama"].cmd_stop == ("kill", "-TERM", "${PID}")


def test_an_unbalanced_quote_in_cmd_is_an_error() -> None:
    with pytest.raises(ConfigError, match=r"^models\.llama\.cmd: cannot be split"):
        load("models: {llama: {cmd: 'server \"oops', proxy: 'http://h:1'}}")


@pytest.mark.parametrize("model", [
    "{proxy: 'http://h:1'}", "{cmd: '', proxy: 'http://h:1'}", "{cmd: null, proxy: 'http://h:1'}",
    "{cmd: '# nothing', proxy: 'http://h:1'}",
], ids=["no cmd", "empty cmd", "null cmd", "only comments"])
def test_a_model_with_a_proxy_and_no_cmd_loads_with_nothing_to_start(model: str) -> None:
    # Go loads it and fails only this model when it must start (process_command.go doStart).
    config = load(f"models: {{remote: {model}, local: {{cmd: 'x ${{PORT}}'}}}}")
    assert config.models["remote"].cmd == ()
    assert config.models["remote"].proxy == "http://h:1"
    assert config.models["remote"].port is None
    assert config.models["local"].port == 5800


@pytest.mark.parametrize("model", ["{}", "{cmd: ''}", "{ttl: 5}"])
def test_a_model_with_neither_cmd_nor_proxy_is_refused_as_go_refuses_it(model: str) -> None:
    # Go: "model r: proxy uses ${PORT} but cmd does not - ${PORT} is only available when used in cmd"
    with pytest.raises(ConfigError) as caught:
        load(f"models: {{r: {model}}}")
    assert str(caught.value).startswith(
        "models.r: has neither cmd nor proxy: proxy uses ${PORT} but cmd does not - ${PORT} "
        "is only available when used in cmd (set proxy to")


def test_env_entries_become_name_value_pairs() -> None:
    config = load("models: {m: {cmd: x, proxy: 'http://h:1', env: ['A=1', 'B=x=y', 'C=']}}")

    assert config.models["m"].env == (("A", "1"), ("B", "x=y"), ("C", ""))


def test_an_env_entry_without_equals_is_an_error_naming_it() -> None:
    with pytest.raises(ConfigError, match=r"^models\.m\.env\[1\]: must look like NAME=value"):
        load("models: {m: {cmd: x, proxy: 'http://h:1', env: ['A=1', 'JUSTANAME']}}")


# -- errors and warnings --------------------------------------------------------

def test_an_unknown_key_is_a_warning_not_an_error() -> None:
    config = load("""
        logLevl: debug
        models:
          llama:
            cmd: x
            proxy: http://h:1
            tll: 60
            timeouts: {conect: 5}
    """)

    assert config.warnings == ("unknown key logLevl (ignored)",
                               "unknown key models.llama.tll (ignored)",
                               "unknown key models.llama.timeouts.conect (ignored)")
    assert config.log_level == "info"


def test_a_wrong_type_is_an_error_naming_the_key_path() -> None:
    with pytest.raises(ConfigError) as caught:
        load("models: {llama: {cmd: x, proxy: 'http://h:1', ttl: soon}}")

    assert str(caught.value) == "models.llama.ttl: must be a number"
    assert caught.value.key == "models.llama.ttl"


@pytest.mark.parametrize("text, message", [
    ("models: [a, b]", "models: must be a mapping"),
    ("models: {llama: {cmd: x, unlisted: maybe}}", "models.llama.unlisted: must be true or false"),
    ("models: {llama: {cmd: x, aliases: [a, {b: 1}]}}",
     "models.llama.aliases[1]: must be a string"),
    ("models: {llama: {cmd: x, concurrencyLimit: 1.5}}",
     "models.llama.concurrencyLimit: must be a whole number"),
    ("logToStdout: everything", "logToStdout: must be one of: proxy, upstream, both, none"),
    ("startPort: '5800'", "startPort: must be a whole number"),
    ("globalTTL: -1", "globalTTL: must be >= 0"),
    ("performance: {every: 1s}", "performance.every: must be at least 5s"),
    ("performance: {every: 15}", "performance.every: must be a duration"),
    ("apiKeys: ['has space']", "apiKeys[0]: must not contain spaces"),
    ("peers: {p: {proxy: 'http://h'}}", "peers.p.models: is required"),
    ("upstream: {ignorePaths: ['(']}",
     "upstream.ignorePaths[0]: is not a valid regular expression"),
])
def test_invalid_values_name_their_key(text: str, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load(text)

    assert str(caught.value).startswith(message)


def test_a_yaml_syntax_error_names_the_line() -> None:
    with pytest.raises(ConfigError) as caught:
        load_config_text("models:\n  llama:\n    cmd: [unclosed\n", source="cfg.yaml")

    assert str(caught.value).startswith("cfg.yaml: line 4, column 1: expected ',' or ']'")
    assert "flow sequence that starts on line 3" in str(caught.value)


def test_a_duplicate_yaml_key_is_an_error_naming_both_lines() -> None:
    with pytest.raises(ConfigError,
                       match=r"line 4.*duplicate key 'llama' \(first defined on line 2\)"):
        load_config_text("models:\n  llama: {cmd: a}\n  other: {cmd: b}\n  llama: {cmd: c}\n")


def test_a_missing_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read config file .*nope.yaml"):
        load_config(str(tmp_path / "nope.yaml"))


def test_a_file_on_disk_loads(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text("models:\n  llama:\n    cmd: server --port ${PORT}\n", encoding="utf-8")

    assert load_config(str(path)).models["llama"].port == 5800


# -- immutability -----------------------------------------------------------------

def test_the_loaded_config_is_read_only() -> None:
    config = load("models: {llama: {cmd: x, proxy: 'http://h:1', metadata: {a: [1]}}}")
    model = config.models["llama"]

    with pytest.raises(dataclasses.FrozenInstanceError):
        model.ttl = 5  # type: ignore[misc]
    with pytest.raises(TypeError):
        model.metadata["b"] = 2  # type: ignore[index]
    with pytest.raises(TypeError):
        config.models["other"] = model  # type: ignore[index]
    assert model.metadata["a"] == (1,)

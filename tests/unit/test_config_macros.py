"""Macros, ${env.X}, ${MODEL_ID} and ${PORT}: what expands where, and what is refused."""

from __future__ import annotations

import textwrap

import pytest

from app.config import Config, ConfigError, load_config_text


def load(text: str) -> Config:
    return load_config_text(textwrap.dedent(text))


def test_a_macro_can_use_macros_defined_above_it() -> None:
    config = load("""
        macros:
          base: /models
          path: ${base}/llama
          full: ${path}/model.gguf
        models:
          llama:
            cmd: server -m ${full}
            proxy: http://h:1
    """)

    assert config.models["llama"].cmd == ("server", "-m", "/models/llama/model.gguf")


def test_a_macro_used_before_it_is_defined_is_an_error_naming_it() -> None:
    with pytest.raises(ConfigError) as caught:
        load("""
            macros:
              args: --ctx ${ctx}
              ctx: 4096
            models:
              llama: {cmd: "server ${args}", proxy: "http://h:1"}
        """)

    assert str(caught.value).startswith(
        "models.llama.cmd: macro 'ctx' is used before it is defined")


def test_an_undefined_macro_is_an_error_naming_it_and_the_field() -> None:
    with pytest.raises(ConfigError, match=r"^models\.llama\.name: unknown macro '\$\{nope\}'"):
        load("models: {llama: {cmd: x, proxy: 'http://h:1', name: 'Llama ${nope}'}}")


def test_a_model_macro_overrides_a_global_one_even_inside_other_global_macros() -> None:
    config = load("""
        macros:
          tag: global
          msg: value-${tag}
        models:
          llama:
            macros: {tag: model-level}
            cmd: echo ${msg}
            proxy: http://h:1
    """)

    assert config.models["llama"].cmd == ("echo", "value-model-level")


def test_model_id_is_available_in_global_macros() -> None:
    config = load("""
        macros:
          docker: docker run --name ${MODEL_ID} -p ${PORT}:8080 img
        models:
          qwen: {cmd: "${docker}", cmdStop: "docker stop ${MODEL_ID}"}
    """)

    model = config.models["qwen"]
    assert model.cmd == ("docker", "run", "--name", "qwen", "-p", "5800:8080", "img")
    assert model.cmd_stop == ("docker", "stop", "qwen")


@pytest.mark.parametrize("name", ["PORT", "MODEL_ID", "PID"])
def test_reserved_macro_names_are_rejected(name: str) -> None:
    with pytest.raises(ConfigError, match=rf"^macros\.{name}: macro name '{name}' is reserved"):
        load(f"macros: {{{name}: 1}}")


def test_a_model_macro_with_a_reserved_name_names_the_model() -> None:
    with pytest.raises(ConfigError, match=r"^models\.llama\.macros\.PORT: .*reserved"):
        load("models: {llama: {cmd: x, macros: {PORT: 1}}}")


@pytest.mark.parametrize("definition, message", [
    ("{'bad name': 1}", "must match"),
    ("{x: [1, 2]}", "must be a number, a bool or a string"),
    ("{x: ~}", "must be a number, a bool or a string"),
    ("{x: 'a ${x}'}", "refers to itself"),
    (f"{{{'n' * 64}: 1}}", "longer than 63 characters"),
])
def test_invalid_macro_definitions_are_rejected(definition: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load(f"macros: {definition}")


def test_macro_values_are_written_as_go_writes_them() -> None:
    config = load("""
        macros: {on: true, temp: 0.7, big: 1000000.0, whole: 2.0}
        models:
          m: {cmd: "s ${on} ${temp} ${big} ${whole}", proxy: "http://h:1"}
    """)

    assert config.models["m"].cmd == ("s", "true", "0.7", "1e+06", "2")


# -- ${env.X} -------------------------------------------------------------------

def test_env_references_are_replaced_everywhere(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODELS", "/srv/models")
    monkeypatch.setenv("TTL", "90")
    config = load("""
        macros:
          dir: ${env.MODELS}/gguf
        models:
          llama:
            cmd: server -m ${dir}/llama.gguf
            proxy: http://h:1
            ttl: ${env.TTL}
    """)

    model = config.models["llama"]
    assert model.cmd == ("server", "-m", "/srv/models/gguf/llama.gguf")
    assert model.ttl == 90


def test_a_missing_env_variable_is_an_error_naming_it_and_where(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOT_SET_ANYWHERE", raising=False)
    with pytest.raises(ConfigError) as caught:
        load("apiKeys: ['${env.NOT_SET_ANYWHERE}']")

    assert str(caught.value).startswith(
        "apiKeys[0]: environment variable 'NOT_SET_ANYWHERE' is not set")


def test_env_references_in_comments_are_ignored(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("COMMENTED_OUT", raising=False)
    config = load("""
        # apiKeys: ["${env.COMMENTED_OUT}"]
        models:
          llama: {cmd: x, proxy: "http://h:1"}  # ${env.COMMENTED_OUT}
    """)

    assert config.api_keys == ()


# -- ${PORT} --------------------------------------------------------------------

def test_ports_start_at_start_port_and_go_to_models_using_port_in_sorted_id_order() -> None:
    config = load("""
        startPort: 9000
        models:
          zeta: {cmd: "s --port ${PORT}"}
          fixed: {cmd: "s --port 1999", proxy: "http://1.2.3.4:1999"}
          alpha: {cmd: "s --port ${PORT}", proxy: "http://10.0.0.1:${PORT}"}
          author/model:F16: {cmd: "s -p ${PORT}"}
    """)

    ports = {m.id: m.port for m in config.models.values()}
    assert ports == {"zeta": 9002, "fixed": None, "alpha": 9000, "author/model:F16": 9001}
    assert config.models["alpha"].proxy == "http://10.0.0.1:9000"
    assert config.models["fixed"].proxy == "http://1.2.3.4:1999"
    assert list(config.models) == ["zeta", "fixed", "alpha", "author/model:F16"]


def test_port_inside_a_macro_counts_as_cmd_using_port() -> None:
    config = load("""
        macros: {server: "llama-server --port ${PORT}"}
        models:
          llama: {cmd: "${server} -m x.gguf"}
    """)

    assert config.models["llama"].cmd == ("llama-server", "--port", "5800", "-m", "x.gguf")


def test_an_explicit_proxy_with_port_needs_cmd_to_use_port() -> None:
    with pytest.raises(ConfigError, match=r"^models\.llama\.proxy: uses \$\{PORT\} but cmd"):
        load("models: {llama: {cmd: server --port 80, proxy: 'http://h:${PORT}'}}")


def test_a_default_proxy_for_a_cmd_without_port_is_a_warning() -> None:
    config = load("models: {llama: {cmd: some-server}}")

    assert config.models["llama"].proxy == "http://localhost:5800"
    assert config.warnings[0].startswith("models.llama: cmd does not use ${PORT}")


def test_pid_outside_cmd_stop_is_an_error() -> None:
    with pytest.raises(ConfigError,
                       match=r"^models\.m\.cmd: \$\{PID\} can only be used in cmdStop"):
        load("models: {m: {cmd: 'kill ${PID}', proxy: 'http://h:1'}}")


# -- structured values ------------------------------------------------------------

def test_metadata_macros_keep_their_types() -> None:
    config = load("""
        macros: {ctx: 16384}
        models:
          llama:
            macros: {temp: 0.7}
            cmd: server --port ${PORT}
            metadata:
              port: ${PORT}
              temperature: ${temp}
              note: "${MODEL_ID} on port ${PORT} temp=${temp}, context=${ctx}"
              a_list: [1, 1.23, "id: ${MODEL_ID}"]
              an_obj:
                a: "1"
                c: ["${temp}", false, "model: ${MODEL_ID}"]
    """)

    metadata = config.models["llama"].metadata
    assert metadata["port"] == 5800 and isinstance(metadata["port"], int)
    assert metadata["temperature"] == 0.7
    assert metadata["note"] == "llama on port 5800 temp=0.7, context=16384"
    assert metadata["a_list"] == (1, 1.23, "id: llama")
    assert metadata["an_obj"] == {"a": "1", "c": (0.7, False, "model: llama")}


def test_an_unknown_macro_in_metadata_names_the_nested_key() -> None:
    with pytest.raises(ConfigError, match=r"^models\.m\.metadata\.a\.b\[1\]: unknown macro"):
        load("models: {m: {cmd: x, proxy: 'http://h:1', metadata: {a: {b: [ok, '${zz}']}}}}")


def test_capabilities_may_use_macros() -> None:
    config = load("""
        macros: {ctx: 8192}
        models:
          m: {cmd: x, proxy: "http://h:1", capabilities: {context: "${ctx}", in: [text]}}
          empty: {cmd: x, proxy: "http://h:1", capabilities: {tools: false}}
    """)

    assert config.models["m"].capabilities == {
        "in": ("text",), "out": (), "tools": False, "reranker": False, "context": 8192}
    assert config.models["empty"].capabilities is None


def test_strip_params_are_trimmed_sorted_and_never_model() -> None:
    config = load("""
        macros: {more: top_k}
        models:
          m:
            cmd: x
            proxy: http://h:1
            filters: {stripParams: " temperature, model ,${more}, top_p,,temperature"}
    """)

    assert config.models["m"].filters.strip_params == ("temperature", "top_k", "top_p")


def test_set_params_never_set_the_model() -> None:
    config = load("models: {m: {cmd: x, proxy: 'http://h:1', "
                  "filters: {setParams: {model: other, temperature: 0.2}}}}")

    assert config.models["m"].filters.set_params == {"temperature": 0.2}
    assert "models.m.filters.setParams.model: 'model' is protected" in config.warnings[0]


def test_peer_api_keys_use_global_macros() -> None:
    config = load("""
        macros: {key: sk-from-macro, tokens: 4096}
        peers:
          remote:
            proxy: https://example.com
            apiKey: ${key}
            models: [m1]
            filters: {setParams: {max_tokens: "${tokens}"}}
    """)

    peer = config.peers["remote"]
    assert peer.api_key == "sk-from-macro"
    assert peer.filters.set_params == {"max_tokens": 4096}
    assert peer.timeouts.response_header == 60

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

    assert str(caught.value) == (
        "models.llama.cmd: unknown macro '${ctx}': it is used before it is defined "
        "(a macro can only use macros defined above it)")


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
                       match=r"^models\.m\.cmd: unknown macro '\$\{PID\}': \$\{PID\} can only "
                             "be used in cmdStop"):
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


# -- macros in every value (Go #955) ------------------------------------------------

GLOBAL = "macros: {key: sk-1, ttl: 60, big: llama, temp: 0.7}\n"
LLAMA = "models:\n  llama:\n    cmd: server --port ${PORT}\n"


@pytest.mark.parametrize("text, read, expected", [
    # global macros in top-level values, with their types
    (GLOBAL + "apiKeys: ['${key}']\n", lambda c: c.api_keys, ("sk-1",)),
    (GLOBAL + "globalTTL: ${ttl}\n" + LLAMA, lambda c: (c.global_ttl, c.models["llama"].ttl),
     (60, 60)),
    ("macros: {first: 9000}\nstartPort: ${first}\n" + LLAMA, lambda c: c.models["llama"].port,
     9000),
    (GLOBAL + LLAMA + "hooks: {on_startup: {preload: ['${big}']}}\n", lambda c: c.preload,
     ("llama",)),
    (GLOBAL + LLAMA + "groups: {g: {members: ['${big}']}}\n",
     lambda c: c.groups[0].members, ("llama",)),
    (GLOBAL + LLAMA + "profiles: {p: {pins: {chat: '${big}'}}}\n",
     lambda c: c.profiles["p"].pins["chat"], "llama"),
    (GLOBAL + LLAMA + "selectors: {s: {strategy: pin, targets: ['${big}']}}\n",
     lambda c: c.selectors["s"].targets, ("llama",)),
    # a model's macros, MODEL_ID and PORT in every model value
    (LLAMA + "    checkEndpoint: /health?port=${PORT}\n",
     lambda c: c.models["llama"].check_endpoint, "/health?port=5800"),
    (LLAMA + "    aliases: ['${MODEL_ID}-fast']\n", lambda c: c.aliases, {"llama-fast": "llama"}),
    (LLAMA + "    useModelName: org/${MODEL_ID}\n", lambda c: c.models["llama"].use_model_name,
     "org/llama"),
    (LLAMA + "    macros: {home: /srv}\n    env: ['HOME=${home}', 'PORT=${PORT}']\n",
     lambda c: c.models["llama"].env, (("HOME", "/srv"), ("PORT", "5800"))),
    (GLOBAL + LLAMA + "    filters: {setParams: {temperature: '${temp}'}}\n",
     lambda c: c.models["llama"].filters.set_params, {"temperature": 0.7}),
    (LLAMA + "    filters: {setParamsByID: {'${MODEL_ID}:${PORT}': {top_k: 1}}}\n",
     lambda c: c.aliases, {"llama:5800": "llama"}),
    # a model macro overrides a global one inside its model only
    ("macros: {who: global}\napiKeys: ['${who}']\n" + LLAMA
     + "    macros: {who: model}\n    name: '${who}'\n",
     lambda c: (c.api_keys, c.models["llama"].name), (("global",), "model")),
    # anchors are expanded per model; unknown top-level keys are left alone
    ("x-base: &base {cmd: 'server --port ${PORT}', name: 'the ${MODEL_ID}'}\n"
     "models:\n  a: *base\n  b: {<<: *base}\n",
     lambda c: (c.models["a"].name, c.models["b"].name, c.models["b"].port),
     ("the a", "the b", 5801)),
])
def test_macros_expand_in_every_value_of_their_scope(text: str, read, expected) -> None:
    assert read(load_config_text(text)) == expected


@pytest.mark.parametrize("text, message", [
    ("apiKeys: ['${KEY}']\n", "apiKeys[0]: unknown macro '${KEY}'"),
    ("globalTTL: '${PORT}'\n",
     "globalTTL: unknown macro '${PORT}': ${PORT} exists only inside a model's settings"),
    ("hooks: {on_startup: {preload: ['${MODEL_ID}']}}\n",
     "hooks.on_startup.preload[0]: unknown macro '${MODEL_ID}': ${MODEL_ID} exists only "
     "inside a model's settings"),
    ("peers: {p: {proxy: 'http://h', models: [m], apiKey: '${tok}'}}\n",
     "peers.p.apiKey: unknown macro '${tok}'"),
    ("macros: {t: 60s}\nglobalTTL: ${t}\n", "globalTTL: must be a number"),
    ("models:\n  a: {cmd: 'x ${PORT}', macros: {only_a: 1}}\n  b: {cmd: 'x ${only_a}'}\n",
     "models.b.cmd: unknown macro '${only_a}'"),
    ("models:\n  m: {cmd: x, proxy: 'http://h:1', checkEndpoint: '/h?p=${PORT}'}\n",
     "models.m.checkEndpoint: unknown macro '${PORT}': ${PORT} is only assigned to a model "
     "whose cmd uses it"),
    (LLAMA + "    aliases: ['${nope}']\n", "models.llama.aliases[0]: unknown macro '${nope}'"),
    (LLAMA + "    filters: {setParamsByID: {'${MODEL_ID}-hi': {}, 'llama-hi': {}}}\n",
     'models.llama.filters.setParamsByID: keys "${MODEL_ID}-hi" and "llama-hi" resolve to '
     'the same value "llama-hi"'),
    (LLAMA + "    filters: {setParamsByID: {'${nope}-x': {}}}\n",
     "models.llama.filters.setParamsByID: unknown macro '${nope}' in the key \"${nope}-x\""),
    ("macros: {PORT: 1}\n", "macros.PORT: macro name 'PORT' is reserved"),
])
def test_a_macro_out_of_its_scope_is_refused_with_gos_message(text: str, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config_text(text)

    assert str(caught.value) == message


def test_env_references_work_in_flow_style_as_in_go(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KEY_ONE", "sk-one")
    monkeypatch.setenv("TTL", "90")
    config = load_config_text("apiKeys: [${env.KEY_ONE}]\nglobalTTL: ${env.TTL}\n")

    assert config.api_keys == ("sk-one",)
    assert config.global_ttl == 90


def test_env_values_are_escaped_for_double_quotes_as_go_does(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("QUOTED", 'a"b\\c')
    config = load_config_text('apiKeys: ["${env.QUOTED}"]\n')

    assert config.api_keys == ('a"b\\c',)


def test_a_missing_env_variable_in_text_that_does_not_parse_names_the_line(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOT_SET_ANYWHERE", raising=False)
    with pytest.raises(ConfigError) as caught:
        load_config_text("models: {}\napiKeys: [${env.NOT_SET_ANYWHERE}]\n")

    assert str(caught.value) == ("<config>: line 2, column 11: environment variable "
                                 "'NOT_SET_ANYWHERE' is not set")


def test_an_env_value_with_a_newline_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TWO_LINES", "a\nb")
    with pytest.raises(ConfigError) as caught:
        load_config_text("apiKeys: ['${env.TWO_LINES}']\n")

    assert str(caught.value) == ("apiKeys[0]: environment variable 'TWO_LINES' contains "
                                 "newlines or null bytes which are not allowed in YAML "
                                 "substitution (line 1)")

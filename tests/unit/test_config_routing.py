"""Aliases, groups, the matrix, priorities, preload, selectors and profiles."""

from __future__ import annotations

import textwrap

import pytest

from app.config import (
    Config, ConfigError, GroupConfig, MatrixConfig, MatrixSet, load_config_text,
)

MODELS = """
models:
  llama: {cmd: "s --port ${PORT}", aliases: [gpt-4o-mini]}
  qwen: {cmd: "s --port ${PORT}"}
  mistral: {cmd: "s --port ${PORT}"}
"""


def load(text: str) -> Config:
    return load_config_text(textwrap.dedent(text))


# -- aliases ---------------------------------------------------------------------

def test_resolve_finds_models_by_id_or_alias() -> None:
    config = load(MODELS)

    assert config.resolve("llama") == "llama"
    assert config.resolve("gpt-4o-mini") == "llama"
    assert config.resolve("gpt-4") is None


def test_an_alias_claimed_by_two_models_is_an_error_naming_both() -> None:
    with pytest.raises(ConfigError) as caught:
        load("""
            models:
              model1: {cmd: x, proxy: "http://h:1", aliases: [m1]}
              model2: {cmd: x, proxy: "http://h:1", aliases: [m2, m1]}
        """)

    assert str(caught.value) == ("models.model2.aliases[1]: alias 'm1' is used by both "
                                 "model 'model1' and model 'model2'")


def test_an_alias_that_is_another_model_id_is_an_error() -> None:
    with pytest.raises(ConfigError, match="alias 'b' of model 'a' is the id of model 'b'"):
        load("models: {a: {cmd: x, proxy: 'http://h:1', aliases: [b]},"
             " b: {cmd: x, proxy: 'http://h:1'}}")


def test_set_params_by_id_keys_become_aliases() -> None:
    config = load("""
        models:
          gpt:
            cmd: x
            proxy: http://h:1
            aliases: [gpt-4o-mini]
            filters:
              setParamsByID:
                "${MODEL_ID}": {reasoning_effort: medium}
                "${MODEL_ID}:high": {reasoning_effort: high}
    """)

    model = config.models["gpt"]
    assert model.aliases == ("gpt-4o-mini", "gpt:high")
    assert config.aliases == {"gpt-4o-mini": "gpt", "gpt:high": "gpt"}
    assert model.filters.set_params_by_id["gpt:high"] == {"reasoning_effort": "high"}


def test_a_set_params_by_id_key_owned_by_another_model_is_an_error() -> None:
    with pytest.raises(ConfigError, match="alias 'shared' is used by both model 'a' and model 'b'"):
        load("""
            models:
              a: {cmd: x, proxy: "http://h:1", aliases: [shared]}
              b: {cmd: x, proxy: "http://h:1", filters: {setParamsByID: {shared: {t: 1}}}}
        """)


# -- groups ------------------------------------------------------------------------

def test_groups_come_from_routing_router_settings_with_defaults() -> None:
    config = load(MODELS + """
routing:
  router:
    settings:
      groups:
        pair: {swap: false, members: [llama, qwen]}
        solo: {members: [mistral], persistent: true}
""")

    assert config.router_use == "group"
    assert config.groups == (
        GroupConfig("pair", ("llama", "qwen"), swap=False, exclusive=True, persistent=False),
        GroupConfig("solo", ("mistral",), swap=True, exclusive=True, persistent=True),
    )


def test_legacy_top_level_groups_are_still_read() -> None:
    config = load(MODELS + "groups: {pair: {members: [llama, qwen]}}\n")

    assert config.groups == (GroupConfig("pair", ("llama", "qwen")),)


def test_a_model_in_two_groups_is_an_error() -> None:
    with pytest.raises(ConfigError, match="model 'qwen' is in both group 'g1' and group 'g2'"):
        load(MODELS + "groups: {g1: {members: [qwen]}, g2: {members: [llama, qwen]}}\n")


def test_a_model_listed_twice_in_one_group_is_an_error() -> None:
    with pytest.raises(ConfigError, match=r"^groups\.g1\.members: lists model 'qwen' twice"):
        load(MODELS + "groups: {g1: {members: [qwen, qwen]}}\n")


def test_an_undefined_group_member_is_dropped_with_a_warning() -> None:
    config = load(MODELS + "groups: {g1: {members: [qwen, ghost]}}\n")

    assert config.groups[0].members == ("qwen",)
    assert config.warnings == ("groups.g1.members: 'ghost' is not a defined model (ignored)",)


def test_routing_and_legacy_groups_together_are_an_error() -> None:
    with pytest.raises(ConfigError, match=r"^groups: cannot be used together with routing\.router"):
        load(MODELS + """
groups: {g1: {members: [qwen]}}
routing:
  router:
    settings:
      groups: {g2: {members: [llama]}}
""")


# -- matrix ----------------------------------------------------------------------

def test_a_legacy_top_level_matrix_selects_the_matrix_router() -> None:
    config = load(MODELS + """
matrix:
  vars: {l: llama, q: qwen}
  evict_costs: {l: 5}
  sets: {both: "l & q", alone: mistral}
""")

    assert config.router_use == "matrix"
    assert config.matrix == MatrixConfig(
        vars={"l": "llama", "q": "qwen"},
        evict_costs={"llama": 5},
        sets=(MatrixSet("both", "l & q", frozenset({"llama", "qwen"})),
              MatrixSet("alone", "mistral", frozenset({"mistral"}))),
        expressions={"both": "l & q", "alone": "mistral"},
    )
    assert list(config.matrix.expressions) == ["both", "alone"]
    assert config.warnings == ()


def test_routing_router_use_matrix_interprets_the_settings_matrix() -> None:
    config = load(MODELS + """
routing:
  router:
    use: matrix
    settings:
      matrix:
        sets: {std: "(llama | qwen) & mistral"}
""")

    assert config.router_use == "matrix"
    assert [sorted(s.members) for s in config.matrix.sets] == [
        ["llama", "mistral"], ["mistral", "qwen"]]


def test_a_matrix_is_ignored_with_a_warning_when_groups_are_in_use() -> None:
    # Go only reads the matrix when use is "matrix"; it does not even check it.
    config = load(MODELS + """
routing:
  router:
    use: group
    settings:
      matrix: {sets: {broken: "(llama"}}
""")

    assert config.router_use == "group"
    assert config.matrix is None
    assert config.warnings == ("routing.router.settings.matrix: not used because "
                               "routing.router.use is 'group' (ignored)",)


def test_router_use_matrix_needs_a_matrix() -> None:
    with pytest.raises(ConfigError, match=r"^routing\.router\.use: is 'matrix' but"):
        load(MODELS + "routing: {router: {use: matrix}}\n")


def test_a_matrix_without_sets_is_an_error() -> None:
    with pytest.raises(ConfigError, match=r"^routing\.router\.settings\.matrix\.sets: must define"):
        load(MODELS + "routing: {router: {use: matrix, settings: {matrix: {vars: {l: llama}}}}}\n")


def test_a_bad_var_name_is_an_error() -> None:
    with pytest.raises(ConfigError, match=r"^matrix\.vars\.a_b: must be 1-32 letters"):
        load(MODELS + "matrix: {vars: {a_b: llama}, sets: {s: a_b}}\n")


def test_a_var_naming_an_undefined_model_is_kept_with_a_warning() -> None:
    config = load(MODELS + "matrix: {vars: {g: gemma, l: llama}, sets: {s: 'g & l'}}\n")

    assert config.matrix.sets[0].members == frozenset({"gemma", "llama"})
    assert config.warnings == ("matrix.vars.g: 'gemma' is not a defined model (it can never run)",)


def test_a_set_naming_an_undefined_model_warns_once_at_the_set_that_spells_it() -> None:
    config = load(MODELS + """
matrix:
  sets:
    combo: "+base & ghost"
    base: "llama | ghost"
""")

    assert [s.name for s in config.matrix.sets] == ["base", "base", "combo", "combo"]
    assert config.warnings == ("matrix.sets.base: 'ghost' is neither a var nor a defined model "
                               "(it can never run)",)


def test_a_broken_set_expression_is_an_error_naming_the_set_and_position() -> None:
    with pytest.raises(ConfigError) as caught:
        load(MODELS + "matrix: {vars: {l: llama}, sets: {ok: l, pair: 'l & & qwen'}}\n")

    assert str(caught.value).splitlines() == [
        'matrix.sets.pair: unexpected \'&\' at position 4: "l & & qwen"',
        " " * len('matrix.sets.pair: unexpected \'&\' at position 4: "l & ') + "^",
    ]


def test_evict_costs_are_keyed_by_model_id_through_vars() -> None:
    config = load(MODELS + "matrix: {vars: {l: llama}, evict_costs: {l: 5, qwen: 3},"
                           " sets: {s: l}}\n")

    assert config.matrix.evict_costs == {"llama": 5, "qwen": 3}


def test_an_evict_cost_for_an_unknown_name_is_ignored_with_a_warning() -> None:
    config = load(MODELS + "matrix: {evict_costs: {llama-70B: 30}, sets: {s: llama}}\n")

    assert config.matrix.evict_costs == {}
    assert config.warnings == ("matrix.evict_costs.llama-70B: 'llama-70B' is neither a var nor "
                               "a defined model (ignored)",)


def test_two_evict_costs_for_one_model_are_an_error() -> None:
    with pytest.raises(ConfigError, match=r"^matrix\.evict_costs\.llama: 'l' and 'llama' both set"):
        load(MODELS + "matrix: {vars: {l: llama}, evict_costs: {l: 5, llama: 3}, sets: {s: l}}\n")


def test_an_evict_cost_below_one_is_an_error() -> None:
    with pytest.raises(ConfigError, match=r"^matrix\.evict_costs\.l: must be >= 1"):
        load(MODELS + "matrix: {sets: {a: llama}, evict_costs: {l: 0}}\n")


# -- scheduler and hooks -------------------------------------------------------

def test_fifo_priorities_are_keyed_by_model_id_and_unknown_names_warn() -> None:
    config = load(MODELS + """
routing:
  scheduler:
    settings:
      fifo:
        priority: {qwen: 10, gpt-4o-mini: 5, nobody: 1}
""")

    assert config.fifo_priority == {"qwen": 10, "llama": 5}
    assert any("fifo.priority.nobody" in w for w in config.warnings)


def test_preload_resolves_aliases_and_skips_unknown_names() -> None:
    config = load(MODELS + "hooks: {on_startup: {preload: [' gpt-4o-mini ', '', qwen, ghost]}}\n")

    assert config.preload == ("llama", "qwen")
    assert config.warnings == (
        "hooks.on_startup.preload[3]: 'ghost' is not a defined model or alias (ignored)",)


# -- selectors and profiles ------------------------------------------------------

def test_a_selector_with_a_model_id_is_an_error() -> None:
    with pytest.raises(ConfigError, match="selector 'qwen' has the id of model 'qwen'"):
        load(MODELS + "selectors: {qwen: {strategy: pin, targets: [llama]}}\n")


def test_a_selector_cannot_target_a_selector() -> None:
    with pytest.raises(ConfigError, match=r"^selectors\.b\.targets\[0\]: 'a' is a selector"):
        load(MODELS + "selectors: {a: {strategy: pin, targets: [llama]},"
                      " b: {strategy: warm, targets: [a]}}\n")


PEER = "peers: {box: {proxy: 'http://127.0.0.1:9', models: [qwen, remote]}}\n"


def test_a_selector_with_a_qualified_peer_model_name_is_an_error() -> None:
    with pytest.raises(ConfigError, match=r"^selectors\.box/remote: selector 'box/remote' is the "
                                          r"qualified name of a model of peer 'box'"):
        load(MODELS + PEER + "selectors: {box/remote: {strategy: pin, targets: [llama]}}\n")


def test_a_model_or_alias_with_a_qualified_peer_model_name_is_an_error() -> None:
    with pytest.raises(ConfigError, match=r"^peers\.box\.models: model 'box/qwen' is also"):
        load(MODELS + "  box/qwen: {cmd: 's --port ${PORT}'}\n" + PEER)
    text = MODELS.replace("aliases: [gpt-4o-mini]", "aliases: [box/remote]") + PEER
    with pytest.raises(ConfigError, match="alias 'box/remote' is also"):
        load(text)


def test_a_bare_peer_model_name_may_also_be_a_local_model() -> None:
    config = load(MODELS + PEER)  # "qwen" is local and box's: the local one wins at runtime
    assert "qwen" in config.models and config.peers["box"].models == ("qwen", "remote")


def test_profile_pins_keep_null_as_disabled() -> None:
    config = load(MODELS + "profiles: {coding: {pins: {code: qwen, image: ~, other: ''}}}\n")

    assert config.profiles["coding"].pins == {"code": "qwen", "image": None, "other": None}

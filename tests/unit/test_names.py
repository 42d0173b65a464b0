"""Name resolution (pins → models and aliases → selectors → peers) and the selector strategies."""

from __future__ import annotations

import textwrap

import pytest

from app.config import load_config_text
from app.config.model import SelectorConfig
from app.naming.listing import model_records
from app.naming.resolve import Local, resolve
from app.naming.selectors import Candidate, Warmth, choose
from scheduler.errors import ModelNotFound

CONFIG = load_config_text(textwrap.dedent("""
    models:
      gpt:
        cmd: server --port ${PORT}
        aliases: [gpt-alias]
        filters:
          setParamsByID:
            "gpt:high": {reasoning_effort: high}
      qwen:
        cmd: server --port ${PORT}
      org/llama:
        cmd: server --port ${PORT}
    peers:
      box:
        proxy: http://127.0.0.1:9
        models: [remote-only, shared]
      other:
        proxy: http://127.0.0.1:10
        models: [shared]
    profiles:
      coding:
        description: for code
        pins:
          llm-code: gpt:high
          llm-plan: fast
          gpt: qwen
          image-gen: ~
    selectors:
      fast:
        strategy: warm
        targets: [gpt, qwen]
      pinned:
        strategy: pin
        targets: [qwen, gpt]
      spill:
        strategy: spillover
        targets: [gpt, box/remote-only]
        settings: {spillover: 2}
      unknowns:
        strategy: pin
        targets: [nothing-here]
"""))
CODING = CONFIG.profiles["coding"]


class FakeLive:
    """Warmth and load per destination name (model id, or ``peer/model``)."""

    def __init__(self, warm: dict[str, Warmth] | None = None, load: dict[str, int] | None = None):
        self.warm = warm or {}
        self.loads = load or {}

    @staticmethod
    def key(destination) -> str:
        return destination.model if isinstance(destination, Local) else \
            f"{destination.peer_id}/{destination.model}"

    def warmth(self, destination) -> Warmth:
        return self.warm.get(self.key(destination), Warmth.COLD)

    def load(self, destination) -> int:
        return self.loads.get(self.key(destination), 0)


def where(name: str, profile=None, live: FakeLive | None = None) -> str:
    destination = resolve(CONFIG, name, profile, live or FakeLive()).destination
    return FakeLive.key(destination)


# -- without a profile ---------------------------------------------------------

@pytest.mark.parametrize("name, expected", [
    ("gpt", "gpt"), ("gpt-alias", "gpt"), ("gpt:high", "gpt"), ("org/llama", "org/llama"),
    ("box/remote-only", "box/remote-only"), ("remote-only", "box/remote-only"),
    ("box/shared", "box/shared"), ("other/shared", "other/shared"),
    ("pinned", "qwen"), ("fast", "gpt"),
])
def test_names_resolve_in_llama_swaps_order(name: str, expected: str) -> None:
    assert where(name) == expected


def test_the_name_that_resolved_is_kept_for_set_params_by_id() -> None:
    resolved = resolve(CONFIG, "gpt:high", None, FakeLive())
    assert resolved.destination == Local("gpt", "gpt:high")
    assert resolved.describe() == "gpt:high"


@pytest.mark.parametrize("name", ["nope", "box/nope", "nobox/remote-only", "llama", "llm-code"])
def test_unknown_names_are_404(name: str) -> None:
    with pytest.raises(ModelNotFound):
        where(name)


def test_a_name_two_peers_list_is_ambiguous_unqualified() -> None:
    with pytest.raises(ModelNotFound, match="box/shared"):
        where("shared")


def test_a_selector_whose_targets_are_all_unknown_is_404() -> None:
    with pytest.raises(ModelNotFound, match="unknowns"):
        where("unknowns")


# -- with a profile --------------------------------------------------------------

def test_pins_apply_before_models_aliases_and_selectors() -> None:
    assert where("gpt", CODING) == "qwen", "a pin may shadow a model id"
    assert where("gpt-alias", CODING) == "gpt", "aliases are not pinned names"
    assert where("llm-plan", CODING, FakeLive({"qwen": Warmth.READY})) == "qwen", "a pin to a selector"
    resolved = resolve(CONFIG, "llm-code", CODING, FakeLive())
    assert resolved.destination == Local("gpt", "gpt:high"), "a pin to a setParamsByID alias"
    assert resolved.describe() == "llm-code → gpt:high (profile coding)"


def test_a_pin_to_nothing_disables_the_name() -> None:
    with pytest.raises(ModelNotFound, match="disabled by the active profile coding"):
        where("image-gen", CODING)


def test_the_log_line_says_how_a_selector_decided() -> None:
    resolved = resolve(CONFIG, "llm-plan", CODING, FakeLive())
    assert resolved.describe() == "llm-plan → gpt (profile coding, selector warm)"


# -- the strategies ----------------------------------------------------------------

def selector(strategy: str, spillover: int = 1) -> SelectorConfig:
    return SelectorConfig(id="s", strategy=strategy, targets=("a", "b", "c"), spillover=spillover)


def candidates(*specs: tuple[Warmth, int]) -> list[Candidate]:
    return [Candidate(name, warmth, load) for name, (warmth, load) in zip("abc", specs)]


COLD, STARTING, READY = Warmth.COLD, Warmth.STARTING, Warmth.READY


@pytest.mark.parametrize("specs, expected", [
    ([(COLD, 0), (COLD, 0), (COLD, 0)], "a"),  # nothing running: cold-start the first
    ([(COLD, 0), (READY, 0), (READY, 0)], "b"),  # the first ready one
    ([(STARTING, 0), (COLD, 0), (READY, 5)], "c"),  # ready beats starting, load does not matter
    ([(COLD, 0), (STARTING, 0), (STARTING, 0)], "b"),  # else the first already starting
])
def test_warm(specs, expected: str) -> None:
    assert choose(selector("warm"), candidates(*specs)) == expected


def test_pin_always_takes_the_first_target() -> None:
    assert choose(selector("pin"), candidates((COLD, 9), (READY, 0), (READY, 0))) == "a"


@pytest.mark.parametrize("loads, expected", [
    ((0, 0, 0), "a"),
    ((3, 0, 0), "a"),  # below the reservation of 4
    ((4, 0, 0), "b"),  # the first is full: start the next
    ((4, 4, 1), "c"),
    ((5, 4, 4), "b"),  # all full: the least loaded, earlier ones winning ties
    ((6, 7, 6), "a"),
])
def test_spillover(loads: tuple[int, int, int], expected: str) -> None:
    specs = [(READY, load) for load in loads]
    assert choose(selector("spillover", spillover=4), candidates(*specs)) == expected


def test_spill_reaches_a_peer_target_once_the_local_one_is_full() -> None:
    assert where("spill", live=FakeLive(load={"gpt": 1})) == "gpt"
    assert where("spill", live=FakeLive(load={"gpt": 2})) == "box/remote-only"


# -- listing ------------------------------------------------------------------------------------

def test_a_listed_selector_names_its_strategy_and_targets_as_go_does() -> None:
    records = {r["id"]: r for r in model_records(CONFIG, 7)}
    assert records["fast"]["meta"]["llamaswap"] == {"type": "selector", "strategy": "warm",
                                                   "targets": ["gpt", "qwen"]}
    assert records["spill"]["meta"]["llamaswap"] == {"type": "selector", "strategy": "spillover",
                                                    "targets": ["gpt", "box/remote-only"], "spillover": 2}


def test_a_selectors_own_metadata_is_kept_beside_what_the_listing_adds() -> None:
    config = load_config_text(textwrap.dedent("""
        models:
          a:
            cmd: server --port ${PORT}
        selectors:
          any:
            strategy: pin
            targets: [a]
            metadata: {purpose: chat, type: mine}
    """))
    (record,) = [r for r in model_records(config, 7) if r["id"] == "any"]
    assert record["meta"]["llamaswap"] == {"purpose": "chat", "type": "selector", "strategy": "pin",
                                           "targets": ["a"]}


def test_a_pin_is_listed_as_a_profiles_not_as_its_targets_kind() -> None:
    records = {r["id"]: r for r in model_records(CONFIG, 7, CODING)}
    assert records["llm-plan"]["meta"]["llamaswap"]["type"] == "profile"  # pinned to the selector fast
    assert records["llm-code"]["meta"]["llamaswap"] == {"type": "profile"}
    assert records["fast"]["meta"]["llamaswap"]["type"] == "selector"

"""Hostile configs are refused at load with a message naming the key: never a traceback or a hang.

Each row is a config that used to crash the loader (a traceback), hang it, or
load and then misbehave at run time, and the exact ConfigError it gets now.
"""

from __future__ import annotations

import time

import pytest

from app.config import ConfigError, load_config_text


def alias_bomb(levels: int, width: int = 9) -> str:
    """The billion-laughs document: ``width ** levels`` leaves from ``levels`` lines."""
    lines = [f"a0: &a0 [{', '.join(['lol'] * width)}]"]
    for level in range(1, levels):
        lines.append(f"a{level}: &a{level} [{', '.join([f'*a{level - 1}'] * width)}]")
    return "\n".join(lines) + "\n"


def macro_chain(levels: int) -> str:
    """Macros that each repeat the one before four times: 10 * 4**levels characters."""
    macros = "".join(f"  m{i}: '${{m{i - 1}}}${{m{i - 1}}}${{m{i - 1}}}${{m{i - 1}}}'\n"
                     for i in range(1, levels))
    return (f"macros:\n  m0: '0123456789'\n{macros}"
            f"models:\n  a:\n    cmd: run ${{m{levels - 1}}}\n    proxy: http://h:1\n")


def nested(depth: int) -> str:
    """``depth`` lists inside ``models.a.metadata.x``: 100 levels in all for 97."""
    return ("models:\n  a:\n    cmd: x\n    proxy: http://h:1\n    metadata:\n      x: "
            + "[" * depth + "]" * depth + "\n")


MODEL = "models:\n  a:\n    cmd: x ${PORT}\n"


@pytest.mark.parametrize("text, message", [
    # characters YAML does not allow in a file, and ones no process can take
    ("models:\n  a:\n    cmd: x\x00y\n",
     "models.a.cmd: contains the character U+0000, which YAML does not allow "
     "(line 3, column 11)"),
    ("models:\n  a:\n    cmd: x\x07y\n",
     "models.a.cmd: contains the character U+0007, which YAML does not allow "
     "(line 3, column 11)"),
    ("# a comment \x00\nmodels: {}\n",
     "<config>: line 1, column 13: the character U+0000 is not allowed in YAML"),
    ('models:\n  a:\n    cmd: "x\\0y"\n',
     "models.a.cmd: contains a NUL character, which no command, environment or URL "
     "can hold (line 3)"),
    ('models:\n  a:\n    cmd: "x\\ud800"\n',
     "models.a.cmd: contains an unpaired surrogate U+D800, which is not text (line 3)"),
    # nesting and aliases that would take the loader down
    (nested(5000), "models.a.metadata.x[0][0]…: nested deeper than 100 levels (line 6)"),
    (nested(98), "models.a.metadata.x[0][0]…: nested deeper than 100 levels (line 6)"),
    ("a: &a [x, *a]\n", "a[1]: anchor 'a' contains itself (line 1)"),
    ("models:\n  a:\n    cmd: x\n    metadata: &m\n      m: *m\n",
     "models.a.metadata.m: anchor 'm' contains itself (line 5)"),
    (alias_bomb(9),
     "a3[3][6][6][4]: document contains excessive aliasing (its aliases expand to 99% of "
     "what is read; Go's YAML reader refuses such files too) (line 4)"),
    # a chain of macros that explodes
    (macro_chain(30),
     "models.a.cmd: expands to more than 1048576 characters (a macro that repeats "
     "another grows exponentially)"),
    # numbers that are not finite, or do not fit
    (MODEL + "    ttl: .nan\n", "models.a.ttl: must be a finite number"),
    (MODEL + "    unloadTimeout: .inf\n", "models.a.unloadTimeout: must be a finite number"),
    (MODEL + "    timeouts: {connect: -.inf}\n",
     "models.a.timeouts.connect: must be a finite number"),
    ("healthCheckTimeout: .inf\n", "healthCheckTimeout: must be a finite number"),
    ("unloadTimeout: .nan\n", "unloadTimeout: must be a finite number"),
    ("globalTTL: .inf\n", "globalTTL: must be a finite number"),
    ("routing: {scheduler: {settings: {fifo: {maxWait: .nan}}}}\n",
     "routing.scheduler.settings.fifo.maxWait: must be a finite number"),
    ("performance: {every: " + "9" * 400 + "h}\n",
     "performance.every: must be a duration such as 15s, 90m or 1h30m"),
    ("metricsMaxInMemory: 1e30\n",
     "metricsMaxInMemory: must be a whole number of at most 9223372036854775807"),
    ("captureBuffer: 99999999999999999999\n",
     "captureBuffer: must be a whole number of at most 9223372036854775807"),
    # ports and URLs
    ("startPort: 65535\nmodels:\n  a: {cmd: 'a ${PORT}'}\n  b: {cmd: 'b ${PORT}'}\n",
     "startPort: 65535 leaves no port for model 'b' (the models whose cmd uses ${PORT} "
     "take one port each from startPort up, and the last port is 65535)"),
    (MODEL + "    proxy: ftp://h:1\n",
     'models.a.proxy: must be an http:// or https:// URL with a host, got "ftp://h:1"'),
    ("models:\n  a:\n    cmd: x\n    proxy: localhost:8080\n",
     'models.a.proxy: must be an http:// or https:// URL with a host, got "localhost:8080"'),
    ("models:\n  a:\n    cmd: x\n    proxy: 'http://h:99999'\n",
     'models.a.proxy: must be an http:// or https:// URL with a host, got "http://h:99999"'),
    ("peers:\n  p: {proxy: 'file:///etc', models: [m]}\n",
     'peers.p.proxy: must be an http:// or https:// URL with a host, got "file:///etc"'),
])
def test_a_hostile_config_is_refused_naming_the_key(text: str, message: str) -> None:
    started = time.monotonic()
    with pytest.raises(ConfigError) as caught:
        load_config_text(text)

    assert str(caught.value) == message
    assert time.monotonic() - started < 10  # unbounded, these ran for minutes; loaded CI needs the margin


def test_an_alias_bomb_is_refused_before_it_is_expanded_anywhere() -> None:
    bomb = alias_bomb(9).replace("\n", "\n  ").strip()
    text = f"models:\n  a:\n    cmd: x\n    proxy: http://h:1\n    metadata:\n      {bomb}\n"
    started = time.monotonic()

    with pytest.raises(ConfigError, match="excessive aliasing"):
        load_config_text(text)
    assert time.monotonic() - started < 10  # unbounded, these ran for minutes; loaded CI needs the margin


def test_ordinary_aliases_and_merges_still_load() -> None:
    defaults = "".join(f"    k{i}: &v{i} {{x: {i}}}\n" for i in range(300))
    uses = "".join(f"      - *v{i % 300}\n" for i in range(600))
    text = (f"macros: {{}}\nx-defaults:\n{defaults}"
            "models:\n  a:\n    cmd: x\n    proxy: http://h:1\n    metadata:\n      list:\n"
            f"{uses}")
    assert len(load_config_text(text).models["a"].metadata["list"]) == 600


def test_nesting_up_to_the_limit_loads() -> None:
    config = load_config_text(nested(97))
    value, depth = config.models["a"].metadata["x"], 1
    while value:
        value, depth = value[0], depth + 1
    assert depth == 97


def test_the_last_port_can_be_used() -> None:
    text = "startPort: 65534\nmodels:\n  a: {cmd: 'a ${PORT}'}\n  b: {cmd: 'b ${PORT}'}\n"
    assert load_config_text(text).models["b"].port == 65535


def test_an_empty_config_loads_with_a_warning() -> None:
    assert load_config_text("").warnings == (
        "no models and no peers are defined: every request for a model will fail",)


def test_a_config_with_only_peers_has_no_such_warning() -> None:
    assert load_config_text("peers:\n  p: {proxy: 'http://h', models: [m]}\n").warnings == ()


# -- what Go refuses, with Go's message and the key ----------------------------------

TWO = ("models:\n  a: {cmd: 'a ${PORT}'}\n  b: {cmd: 'b ${PORT}', aliases: [bee]}\n"
       "  c: {cmd: 'c ${PORT}'}\n")
SPILL = "selectors:\n  s: {strategy: spillover, targets: [a, bee]}\n"
MATRIX = "routing: {router: {use: matrix, settings: {matrix: {vars: {x: a, y: b, z: c}, "


@pytest.mark.parametrize("text, message", [
    # a pin whose target is only another pin
    (TWO + "profiles:\n  test:\n    pins: {first: a, second: first}\n",
     'profiles.test.pins.second: references unknown model "first": "first" is a pin of '
     'profile "test", and pins do not chain; pin "second" to "a" directly'),
    (TWO + "profiles:\n  one: {pins: {first: ~}}\n  two: {pins: {second: first}}\n",
     'profiles.two.pins.second: references unknown model "first": "first" is a pin of '
     'profile "one", and pins do not chain; pin it to a model'),
    # spillover across models the routing keeps apart
    (TWO + SPILL,
     "selectors.s.targets: spillover targets must share a group with swap: false; 'a' is "
     "in no group, so it swaps with every other ungrouped model"),
    (TWO + SPILL + "groups: {g: {members: [a, b]}}\n",
     "selectors.s.targets: spillover targets must share a group with swap: false; 'a' is "
     "in group 'g', which swaps"),
    (TWO + SPILL + "groups: {g: {swap: false, members: [a]}, h: {swap: false, members: [b]}}\n",
     "selectors.s.targets: spillover targets must share one routing group; 'a' is in group "
     "'g' and 'b' in group 'h'"),
    (TWO + SPILL + MATRIX + "sets: {one: 'x & z', two: 'y'}}}}}\n",
     "selectors.s.targets: must all appear together in one expanded matrix set; no set holds "
     "'a', 'b', so only one of them could ever run"),
    (TWO + "selectors:\n  s: {strategy: spillover, targets: [b, bee]}\n",
     'selectors.s.targets: contains duplicate resolved model "b"'),
    # setParamsByID keys that become one key
    ("macros: {v: high}\nmodels:\n  a:\n    cmd: 'a ${PORT}'\n"
     "    filters: {setParamsByID: {'a:${v}': {top_k: 1}, 'a:high': {top_k: 2}}}\n",
     'models.a.filters.setParamsByID: keys "a:${v}" and "a:high" resolve to the same value '
     '"a:high"'),
    # the list-style profiles of llama-swap before groups
    (TWO + "profiles:\n  coding: [a, b]\n",
     "profiles.coding: profile must be a mapping with description and pins; the legacy list "
     "syntax is no longer supported. To run these models together, put them in a group that "
     "does not swap: routing.router.settings.groups: {<name>: {swap: false, members: [a, b]}}, "
     "and ask for each by its own id instead of <profile>:<model>. Profiles now rewrite model "
     "ids: {pins: {<id asked for>: <model that answers>}}"),
])
def test_what_go_refuses_is_refused_with_its_message_naming_the_key(text: str,
                                                                    message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config_text(text)

    assert str(caught.value) == message


@pytest.mark.parametrize("extra", [
    "profiles:\n  test:\n    pins: {first: a, a: b}\n",  # a target that is also a pin's name
    SPILL + "groups: {g: {swap: false, members: [a, b]}}\n",
    SPILL + MATRIX + "sets: {both: 'x & y', one: 'z'}}}}}\n",
    "selectors:\n  s: {strategy: spillover, targets: [a, elsewhere/m]}\n",  # one local target
])
def test_what_go_accepts_next_to_those_refusals_still_loads(extra: str) -> None:
    load_config_text(TWO + extra)

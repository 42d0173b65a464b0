"""--config-dir: which files are read, in which order, and how their documents merge (Go's rules and messages)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from app.config import ConfigError, ConfigSources, load_sources
from app.config.merge import merge_documents
from app.config.sources import source_paths, yaml_files
from app.config.yamlio import parse

# (rule, first file, second file, merged)
MERGES: list[tuple[str, str, str, dict[str, Any]]] = [
    ("a key only one file has is kept, the later file's after",
     "logLevel: info", "globalTTL: 60", {"logLevel": "info", "globalTTL": 60}),
    ("models from both files are all kept, in file order",
     "models: {a: {cmd: x}}", "models: {b: {cmd: y}}",
     {"models": {"a": {"cmd": "x"}, "b": {"cmd": "y"}}}),
    ("groups, peers, profiles and selectors are added to",
     "groups: {g1: {members: [a]}}\npeers: {p1: {proxy: 'http://h'}}",
     "groups: {g2: {members: [b]}}\npeers: {p2: {proxy: 'http://i'}}",
     {"groups": {"g1": {"members": ["a"]}, "g2": {"members": ["b"]}},
      "peers": {"p1": {"proxy": "http://h"}, "p2": {"proxy": "http://i"}}}),
    ("routing.router.settings.groups are added to",
     "routing: {router: {settings: {groups: {ga: {members: [a]}}}}}",
     "routing: {router: {use: groups, settings: {groups: {gb: {members: [b]}}}}}",
     {"routing": {"router": {"settings": {"groups": {"ga": {"members": ["a"]},
                                                     "gb": {"members": ["b"]}}},
                             "use": "groups"}}}),
    ("other mappings merge key by key (macros)",
     "macros: {LOW: 1}", "macros: {HIGH: 2}", {"macros": {"LOW": 1, "HIGH": 2}}),
    ("lists concatenate (apiKeys)",
     "apiKeys: [key-a]", "apiKeys: [key-b]", {"apiKeys": ["key-a", "key-b"]}),
    ("nested lists concatenate (preload)",
     "hooks: {on_startup: {preload: [a]}}", "hooks: {on_startup: {preload: [b]}}",
     {"hooks": {"on_startup": {"preload": ["a", "b"]}}}),
    ("the same scalar twice is no conflict", "globalTTL: 100", "globalTTL: 100", {"globalTTL": 100}),
    ("an empty value yields to the other side", "globalTTL:", "globalTTL: 100", {"globalTTL": 100}),
    ("the other side keeps its value against an empty one",
     "routing: {router: {use: groups}}", "routing:", {"routing": {"router": {"use": "groups"}}}),
    ("an empty file adds nothing", "logLevel: debug", "# only a comment\n", {"logLevel": "debug"}),
]

# (conflict, first file, second file, Go's message; the second file is "b.yaml")
CONFLICTS: list[tuple[str, str, str, str]] = [
    ("a model in two files", "models: {dup: {cmd: x}}", "models: {dup: {cmd: y}}",
     'duplicate models "dup" found in b.yaml (already defined in another config source)'),
    ("a group in two files", "groups: {g1: {members: [a]}}", "groups: {g1: {members: [b]}}",
     'duplicate groups "g1" found in b.yaml (already defined in another config source)'),
    ("a peer in two files", "peers: {remote: {proxy: 'http://x:1'}}",
     "peers: {remote: {proxy: 'http://x:2'}}",
     'duplicate peers "remote" found in b.yaml (already defined in another config source)'),
    ("a profile in two files", "profiles: {p: {pins: {}}}", "profiles: {p: {pins: {}}}",
     'duplicate profiles "p" found in b.yaml (already defined in another config source)'),
    ("a selector in two files", "selectors: {s: {strategy: first}}", "selectors: {s: {targets: []}}",
     'duplicate selectors "s" found in b.yaml (already defined in another config source)'),
    ("a routing group in two files",
     "routing: {router: {settings: {groups: {g: {members: [a]}}}}}",
     "routing: {router: {settings: {groups: {g: {members: [b]}}}}}",
     'duplicate groups "g" found in b.yaml (already defined in another config source)'),
    ("a model of an identical definition is still a duplicate",
     "models: {m: {cmd: x}}", "models: {m: {cmd: x}}",
     'duplicate models "m" found in b.yaml (already defined in another config source)'),
    ("models that are not a mapping", "models:", "models: {a: {cmd: x}}",
     'conflict at "models": expected a mapping, introduced by b.yaml'),
    ("two different scalars", "globalTTL: 100", "globalTTL: 200",
     'conflict at "globalTTL": b.yaml sets a different value than a previous source'),
    ("a nested scalar", "macros: {M: 1}", "macros: {M: 2}",
     'conflict at "macros.M": b.yaml sets a different value than a previous source'),
    ("the same text of another type", "globalTTL: 100", "globalTTL: '100'",
     'conflict at "globalTTL": b.yaml sets a different value than a previous source'),
    ("a scalar against a list", "startPort: 5800", "startPort: [5800, 5801]",
     'conflict at "startPort": incompatible YAML node kinds (kind 8 vs 2) introduced by b.yaml'),
    ("a mapping against a scalar", "hooks: {on_startup: {}}", "hooks: off",
     'conflict at "hooks": incompatible YAML node kinds (kind 4 vs 8) introduced by b.yaml'),
]


def documents(*texts: str) -> list[tuple[str, Any]]:
    return [(name, parse(text, name)) for name, text in zip(("a.yaml", "b.yaml"), texts)]


@pytest.mark.parametrize("first, second, merged", [case[1:] for case in MERGES],
                         ids=[case[0] for case in MERGES])
def test_fragments_merge_by_gos_rules(first: str, second: str, merged: dict[str, Any]) -> None:
    assert merge_documents(documents(first, second)) == merged


@pytest.mark.parametrize("first, second, message", [case[1:] for case in CONFLICTS],
                         ids=[case[0] for case in CONFLICTS])
def test_a_conflict_is_refused_with_gos_message(first: str, second: str, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        merge_documents(documents(first, second))
    assert str(caught.value) == message


def test_merging_changes_neither_input_nor_anything_an_alias_shares() -> None:
    first = parse("keys: &k [a]\napiKeys: *k\n", "a.yaml")
    second = parse("apiKeys: [b]\n", "b.yaml")
    merged = merge_documents([("a.yaml", first), ("b.yaml", second)])
    assert merged["apiKeys"] == ["a", "b"] and merged["keys"] == ["a"]
    assert first == {"keys": ["a"], "apiKeys": ["a"]} and second == {"apiKeys": ["b"]}


def write(path: Path, text: str) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return str(path)


def test_the_directory_gives_its_top_level_yaml_files_in_sorted_order(tmp_path: Path) -> None:
    for name in ("z.yaml", "a.yml", ".hidden.yaml", "B.yaml", "notes.txt", "x.YAML", "sub/c.yaml"):
        write(tmp_path / name, "{}\n")
    (tmp_path / "dir.yaml").mkdir()
    os.symlink(tmp_path / "z.yaml", tmp_path / "link.yaml")

    names = [os.path.basename(path) for path in yaml_files(str(tmp_path))]
    assert names == [".hidden.yaml", "B.yaml", "a.yml", "link.yaml", "z.yaml"]


def test_the_config_file_comes_before_the_directorys_files(tmp_path: Path) -> None:
    base = write(tmp_path / "config.yaml", "{}\n")
    fragment = write(tmp_path / "models" / "a.yaml", "{}\n")
    assert source_paths(ConfigSources(base, str(tmp_path / "models"))) == [base, fragment]


@pytest.mark.parametrize("case, message", [
    ("missing directory", "-config-dir {dir}/nope: No such file or directory"),
    ("config file inside the directory",
     "-config path {dir}/config.yaml is also present in -config-dir {dir}; remove it from one"),
    ("directory without fragments",
     "no configuration sources found (no *.yml or *.yaml files in {dir}/empty)"),
])
def test_sources_that_cannot_be_merged_are_refused_with_gos_message(tmp_path: Path, case: str,
                                                                    message: str) -> None:
    base = write(tmp_path / "config.yaml", "{}\n")
    (tmp_path / "empty").mkdir()
    sources = {
        "missing directory": ConfigSources(None, f"{tmp_path}/nope"),
        "config file inside the directory": ConfigSources(base, str(tmp_path)),
        "directory without fragments": ConfigSources(None, f"{tmp_path}/empty"),
    }[case]
    with pytest.raises(ConfigError) as caught:
        load_sources(sources)
    assert str(caught.value) == message.format(dir=tmp_path)


def test_a_base_file_and_fragments_load_as_one_config(tmp_path: Path) -> None:
    base = write(tmp_path / "config.yaml",
                 "apiKeys: [k1]\nmacros: {SERVER: serve}\nmodels:\n  base: {cmd: '${SERVER} ${PORT}'}\n")
    write(tmp_path / "models" / "b.yaml", "apiKeys: [k2]\nmodels:\n  zeta: {cmd: '${SERVER} ${PORT}'}\n")
    write(tmp_path / "models" / "a.yml", "models:\n  alpha: {cmd: 'a ${PORT}', aliases: [first]}\n")
    write(tmp_path / "models" / "skipped.txt", "models: {nope: {cmd: x}}\n")

    config = load_sources(ConfigSources(base, str(tmp_path / "models")))

    assert list(config.models) == ["base", "alpha", "zeta"]
    assert config.models["zeta"].cmd == ("serve", "5802")  # a macro of the base file; ports by sorted id
    assert config.api_keys == ("k1", "k2")
    assert config.aliases["first"] == "alpha"


def test_the_directory_alone_is_a_config(tmp_path: Path) -> None:
    write(tmp_path / "one.yaml", "models:\n  one: {cmd: 'a ${PORT}'}\n")
    write(tmp_path / "two.yaml", "")
    assert list(load_sources(ConfigSources(None, str(tmp_path))).models) == ["one"]


def test_an_error_in_a_fragment_names_that_file(tmp_path: Path) -> None:
    write(tmp_path / "good.yaml", "models:\n  one: {cmd: 'a ${PORT}'}\n")
    bad = write(tmp_path / "bad.yaml", "models:\n  two: [unclosed\n")
    with pytest.raises(ConfigError, match=f"^{bad}: line 3"):
        load_sources(ConfigSources(None, str(tmp_path)))

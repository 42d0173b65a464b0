"""The matrix set language: what each expression expands to, and where a broken one breaks."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from app.config import ConfigError, MatrixError, expand_sets, load_config_text

REFERENCE = Path(__file__).resolve().parents[1] / "data" / "llama-swap"


def expansion(expression: str, vars: dict[str, str] | None = None,
              **other_sets: str) -> list[list[str]]:
    """The concrete sets of the set ``under_test``, each sorted, in expansion order."""
    sets = expand_sets({**other_sets, "under_test": expression}, vars)
    return [sorted(s.members) for s in sets if s.name == "under_test"]


# -- expansion ---------------------------------------------------------------------

EXPANSIONS = [
    # (id, expression, other sets, expected concrete sets)
    # Every example in the reference config's comments:
    ("one model", "model-a", {}, [["model-a"]]),
    ("and runs together", "a & b", {}, [["a", "b"]]),
    ("or gives alternatives", "a | b", {}, [["a"], ["b"]]),
    ("grouped or, then and", "(a | b) & c", {}, [["a", "c"], ["b", "c"]]),
    ("two groups multiply", "(a | b) & (c | d)", {},
     [["a", "c"], ["a", "d"], ["b", "c"], ["b", "d"]]),
    ("+ref inlines, then and", "+llms & v", {"llms": "a | b"}, [["a", "v"], ["b", "v"]]),
    # The rest of the language:
    ("and binds tighter than or", "a | b & c", {}, [["a"], ["b", "c"]]),
    ("and binds tighter on the left too", "a & b | c", {}, [["a", "b"], ["c"]]),
    ("parentheses override", "(a | b) & c | d", {}, [["a", "c"], ["b", "c"], ["d"]]),
    ("three-way or", "a | b | c", {}, [["a"], ["b"], ["c"]]),
    ("nested parentheses", "((a))", {}, [["a"]]),
    ("spaces are optional", "  (a|b)&c  ", {}, [["a", "c"], ["b", "c"]]),
    ("a model named twice counts once", "a & a", {}, [["a"]]),
    ("a repeated alternative is one set", "a | a | b", {}, [["a"], ["b"]]),
    ("refs of refs", "+pair | x", {"base": "a", "pair": "+base & b"}, [["a", "b"], ["x"]]),
    ("a ref inside parentheses", "(+llms | c) & v", {"llms": "a | b"},
     [["a", "v"], ["b", "v"], ["c", "v"]]),
    ("model ids with / : . _ -", "org/model:Q4_K.M-1 & b", {}, [["b", "org/model:Q4_K.M-1"]]),
    ("non-ascii letters", "modèle & b", {}, [["b", "modèle"]]),
]


@pytest.mark.parametrize(("expression", "others", "expected"),
                         [case[1:] for case in EXPANSIONS], ids=[case[0] for case in EXPANSIONS])
def test_expansion(expression: str, others: dict[str, str], expected: list[list[str]]) -> None:
    assert expansion(expression, **others) == expected


def test_vars_resolve_to_model_ids() -> None:
    assert expansion("(g | q) & v", {"g": "gemma", "q": "qwen", "v": "voxtral"}) == [
        ["gemma", "voxtral"], ["qwen", "voxtral"]]


def test_a_var_wins_over_a_model_id_spelled_the_same() -> None:
    assert expansion("llama & b", {"llama": "qwen-model"}) == [["b", "qwen-model"]]


def test_names_that_are_not_vars_are_kept_as_model_ids() -> None:
    assert expansion("g & other", {"g": "gemma"}) == [["gemma", "other"]]


def test_each_expanded_set_carries_its_set_name_and_expression() -> None:
    sets = expand_sets({"standard": "(g | q) & v"})

    assert [(s.name, s.expression) for s in sets] == [("standard", "(g | q) & v")] * 2


def test_sets_keep_definition_order() -> None:
    sets = expand_sets({"zeta": "a", "alpha": "b | c", "mid": "d"})

    assert [(s.name, sorted(s.members)) for s in sets] == [
        ("zeta", ["a"]), ("alpha", ["b"]), ("alpha", ["c"]), ("mid", ["d"])]


def test_a_referenced_set_comes_before_the_set_that_references_it() -> None:
    # llama-swap expands in dependency order, and ties follow that order.
    sets = expand_sets({"combo": "+base & x", "base": "y", "last": "z"})

    assert [s.name for s in sets] == ["base", "combo", "last"]


# -- the reference configs -------------------------------------------------------

def reference_matrix(file: str) -> dict:
    data = yaml.safe_load((REFERENCE / file).read_text(encoding="utf-8"))
    return data.get("matrix") or data["routing"]["router"]["settings"]["matrix"]


REFERENCE_SETS = [
    # (file, set name, expected concrete sets)
    ("config.example.yaml", "standard",
     [["gemma-model", "voxtral-model"], ["qwen-model", "voxtral-model"],
      ["mistral-model", "voxtral-model"]]),
    ("config.example.yaml", "with_rerank",
     [["gemma-model", "reranker-model", "voxtral-model"],
      ["qwen-model", "reranker-model", "voxtral-model"]]),
    ("config.example.yaml", "creative",
     [["gemma-model", "stable-diffusion"], ["qwen-model", "stable-diffusion"]]),
    ("config.example.yaml", "full", [["llama-70B"]]),
    ("config.example.seed-790.yaml", "standard",
     [["gemma-model", "voxtral-model"], ["qwen-model", "voxtral-model"],
      ["mistral-model", "voxtral-model"]]),
    ("config.example.seed-790.yaml", "with_rerank",
     [["gemma-model", "reranker-model", "voxtral-model"],
      ["qwen-model", "reranker-model", "voxtral-model"]]),
    ("config.example.seed-790.yaml", "creative",
     [["gemma-model", "stable-diffusion"], ["qwen-model", "stable-diffusion"]]),
    ("config.example.seed-790.yaml", "full", [["llama-70B"]]),
]


@pytest.mark.parametrize(("file", "set_name", "expected"), REFERENCE_SETS,
                         ids=[f"{case[0]}:{case[1]}" for case in REFERENCE_SETS])
def test_reference_example_sets(file: str, set_name: str, expected: list[list[str]]) -> None:
    matrix = reference_matrix(file)
    sets = expand_sets(matrix["sets"], matrix["vars"])

    assert [s.members for s in sets if s.name == set_name] == [frozenset(e) for e in expected]


def test_reference_example_sets_come_in_definition_order() -> None:
    matrix = reference_matrix("config.example.yaml")

    names = [s.name for s in expand_sets(matrix["sets"], matrix["vars"])]
    assert names == ["standard"] * 3 + ["with_rerank"] * 2 + ["creative"] * 2 + ["full"]


# -- errors --------------------------------------------------------------------------

ERRORS = [
    # (id, the sets, set at fault, message before the quoted expression)
    ("extra ')'", {"standard": "(g | q)) & v"}, "standard", "unexpected ')' at position 7"),
    ("unclosed '('", {"s": "(a | b"}, "s", "'(' is never closed at position 0"),
    ("unclosed inner '('", {"s": "a & ((b | c)"}, "s", "'(' is never closed at position 4"),
    ("empty parentheses", {"s": "()"}, "s", "unexpected ')' at position 1"),
    ("dangling '&'", {"s": "a &"}, "s", "missing a model, '(' or '+set' at position 3"),
    ("dangling '|' before ')'", {"s": "(a |) & b"}, "s", "unexpected ')' at position 4"),
    ("leading '|'", {"s": "| a"}, "s", "unexpected '|' at position 0"),
    ("two names without an operator", {"s": "a b"}, "s", "unexpected 'b' at position 2"),
    ("empty expression", {"s": ""}, "s", "empty expression at position 0"),
    ("blank expression", {"s": "   "}, "s", "empty expression at position 0"),
    ("bad identifier character", {"s": "a & b!"}, "s", "unexpected character '!' at position 5"),
    ("'+' without a set name", {"s": "a & +"}, "s",
     "'+' must be followed by a set name at position 4"),
    ("unknown +ref", {"s": "+llms & v"}, "s", "unknown set '+llms' at position 0"),
    ("+ref to itself", {"s": "a | +s"}, "s", "reference cycle s -> s at position 4"),
    ("+ref cycle through two sets", {"a": "x & +b", "b": "y | +a"}, "b",
     "reference cycle a -> b -> a at position 4"),
    ("error in a later set", {"ok": "a", "bad": "a &| b"}, "bad", "unexpected '|' at position 3"),
    ("3,000 nested parentheses", {"s": "(" * 3000 + "a" + ")" * 3000}, "s",
     "parentheses nested deeper than 100 levels at position 100"),
]


def load_matrix(sets: dict[str, str]) -> None:
    config = {"models": {"a": {"cmd": "s --port ${PORT}"}},
              "routing": {"router": {"use": "matrix", "settings": {"matrix": {"sets": sets}}}}}
    load_config_text(yaml.safe_dump(config, sort_keys=False))


@pytest.mark.parametrize(("sets", "bad_set", "message"), [case[1:] for case in ERRORS],
                         ids=[case[0] for case in ERRORS])
def test_a_broken_expression_names_its_set_key_and_position(
        sets: dict[str, str], bad_set: str, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_matrix(sets)

    key = f"routing.router.settings.matrix.sets.{bad_set}"
    first_line = str(caught.value).splitlines()[0]
    assert first_line == f'{key}: {message}: "{sets[bad_set]}"'
    assert caught.value.key == key


def test_the_caret_points_at_the_position_in_the_quoted_expression() -> None:
    with pytest.raises(ConfigError) as caught:
        load_matrix({"standard": "(g | q)) & v"})

    first, caret = str(caught.value).splitlines()
    assert first.endswith('"(g | q)) & v"')
    assert caret.strip() == "^"
    assert first[caret.index("^")] == ")" and first[caret.index("^") - 1] == ")"


def test_matrix_error_carries_the_set_and_position() -> None:
    with pytest.raises(MatrixError) as caught:
        expand_sets({"fine": "a", "standard": "(g | q)) & v"})

    err = caught.value
    assert (err.set_name, err.expression, err.position) == ("standard", "(g | q)) & v", 7)
    message, caret = err.with_pointer(indent=0).splitlines()
    assert message[caret.index("^"):] == ') & v"'


def test_an_expansion_beyond_1000_sets_is_refused() -> None:
    wide = " | ".join(f"m{i}" for i in range(32))

    with pytest.raises(MatrixError, match="expands to more than 1000 combinations") as caught:
        expand_sets({"huge": f"({wide}) & ({wide})"})
    assert caught.value.set_name == "huge" and caught.value.position is None


def test_many_sets_beyond_1000_in_all_are_refused() -> None:
    wide = " | ".join(f"m{i}" for i in range(600))

    with pytest.raises(MatrixError, match="more than 1000 combinations in all") as caught:
        expand_sets({"first": wide, "second": wide})
    assert caught.value.set_name == "second"


def test_parentheses_nested_up_to_the_limit_expand() -> None:
    assert expansion("(" * 100 + "a" + ")" * 100) == [["a"]]


def test_a_long_chain_of_references_defined_last_first_expands() -> None:
    chain = {f"s{i}": f"+s{i - 1}" for i in range(3000, 0, -1)}

    sets = expand_sets({**chain, "s0": "a"}, limit=10_000)
    assert {s.name for s in sets} == {f"s{i}" for i in range(3001)}
    assert [s.name for s in sets][:2] == ["s0", "s1"]

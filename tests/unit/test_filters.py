"""Request-body filters (``app.relay.filters``): what the upstream gets for each model setting."""

from __future__ import annotations

from app.config.frozen import freeze
from app.config.model import ModelFilters
from app.relay.filters import delete_path, rewrite, set_path, split_path

NO_FILTERS = ModelFilters()


def filters(strip=(), set_params=None, by_id=None) -> ModelFilters:
    return ModelFilters(strip_params=tuple(strip), set_params=freeze(set_params or {}),
                        set_params_by_id=freeze(by_id or {}))


def test_nothing_configured_leaves_the_body_alone():
    assert rewrite({"model": "m", "temperature": 1}, "m", "", NO_FILTERS) is None


def test_use_model_name_replaces_the_model_sent_upstream():
    assert rewrite({"model": "alias", "x": 1}, "alias", "org/real", NO_FILTERS) == {"model": "org/real", "x": 1}


def test_use_model_name_equal_to_the_request_is_no_change():
    assert rewrite({"model": "org/real"}, "org/real", "org/real", NO_FILTERS) is None


def test_strip_params_removes_keys_but_never_model():
    body = {"model": "m", "temperature": 0.1, "top_p": 0.5, "keep": True}
    out = rewrite(body, "m", "", filters(strip=["temperature", "top_p", "model", "absent"]))
    assert out == {"model": "m", "keep": True}


def test_strip_of_absent_keys_is_no_change():
    assert rewrite({"model": "m"}, "m", "", filters(strip=["temperature"])) is None


def test_set_params_adds_and_overrides_but_never_sets_model():
    out = rewrite({"model": "m", "temperature": 2}, "m", "",
                  filters(set_params={"temperature": 0.7, "top_k": 40, "model": "evil"}))
    assert out == {"model": "m", "temperature": 0.7, "top_k": 40}


def test_set_params_to_the_value_already_there_is_no_change():
    assert rewrite({"model": "m", "top_k": 40}, "m", "", filters(set_params={"top_k": 40})) is None


def test_a_value_of_another_json_type_is_a_change():
    out = rewrite({"model": "m", "top_k": 40.0}, "m", "", filters(set_params={"top_k": 40}))
    assert out == {"model": "m", "top_k": 40} and isinstance(out["top_k"], int)


def test_set_params_by_id_applies_only_for_the_name_used_and_wins_over_set_params():
    f = filters(set_params={"reasoning_effort": "medium"},
                by_id={"m:high": {"reasoning_effort": "high", "chat_template_kwargs": {"think": True}}})
    assert rewrite({"model": "m"}, "m", "", f) == {"model": "m", "reasoning_effort": "medium"}
    assert rewrite({"model": "m:high"}, "m:high", "", f) == {
        "model": "m:high", "reasoning_effort": "high", "chat_template_kwargs": {"think": True}}


def test_order_is_use_model_name_strip_set_then_by_id():
    f = filters(strip=["temperature"], set_params={"temperature": 0.3}, by_id={"a": {"temperature": 0.9}})
    assert rewrite({"model": "a", "temperature": 5}, "a", "real", f) == {"model": "real", "temperature": 0.9}


def test_set_values_are_plain_json_and_not_shared_with_config():
    f = filters(set_params={"stop": ["a", "b"], "opts": {"x": [1]}})
    out = rewrite({"model": "m"}, "m", "", f)
    assert out == {"model": "m", "stop": ["a", "b"], "opts": {"x": [1]}}
    assert type(out["stop"]) is list and type(out["opts"]) is dict
    out["opts"]["x"].append(2)
    assert f.set_params["opts"]["x"] == (1,)


def test_the_input_body_is_never_mutated():
    body = {"model": "m", "temperature": 1, "nested": {"a": 1}}
    rewrite(body, "m", "x", filters(strip=["temperature", "nested.a"], set_params={"top_k": 1}))
    assert body == {"model": "m", "temperature": 1, "nested": {"a": 1}}


def test_dotted_keys_are_paths_as_in_go():
    body = {"model": "m", "chat_template_kwargs": {"enable_thinking": True, "keep": 1}}
    out = rewrite(body, "m", "", filters(strip=["chat_template_kwargs.enable_thinking"],
                                         set_params={"options.num_ctx": 4096}))
    assert out == {"model": "m", "chat_template_kwargs": {"keep": 1}, "options": {"num_ctx": 4096}}


def test_path_helpers():
    assert split_path("a.b\\.c") == ["a", "b.c"]
    body = {"a": [{"x": 1}, {"x": 2}], "s": 3}
    assert set_path(body, "a.1.x", 5) and body["a"][1] == {"x": 5}
    assert set_path(body, "s.t", 1) and body["s"] == {"t": 1}  # a scalar on the way becomes an object
    assert not set_path(body, "a.9.x", 1)  # no such list element: nothing to set
    assert delete_path(body, "a.0") and body["a"] == [{"x": 5}]
    assert not delete_path(body, "missing.key")

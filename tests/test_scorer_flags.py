"""The comma-separated list flags of ``kubeattention evaluate --model`` and ``calibrate --victims/--antagonists``."""

from __future__ import annotations

import pytest

from scorer.flags import FlagError, parse_names

KNOWN = ("mlp", "xgboost")


@pytest.mark.parametrize(
    ("text", "names"),
    [
        ("mlp", ["mlp"]),
        ("xgboost,mlp", ["xgboost", "mlp"]),  # the order given
        (" mlp , xgboost ,", ["mlp", "xgboost"]),  # blanks and spaces ignored
        ("mlp,mlp,xgboost,mlp", ["mlp", "xgboost"]),  # each once, first place kept
    ],
)
def test_names_in_order_each_once(text, names):
    assert parse_names(text, KNOWN, "--model") == names


def test_unknown_names_are_named_with_the_flag_and_the_choices():
    with pytest.raises(
        FlagError, match=r"^--model: unknown 'forest', 'tree'; expected a comma-separated list of mlp, xgboost$"
    ):
        parse_names("mlp,forest,tree", KNOWN, "--model")


@pytest.mark.parametrize("text", ["", " , ,"])
def test_an_empty_list_is_refused(text):
    with pytest.raises(FlagError, match=r"^--victims: empty list; expected a comma-separated list of mlp, xgboost$"):
        parse_names(text, KNOWN, "--victims")


def test_a_mapping_offers_its_keys():
    assert parse_names("b", {"a": 1, "b": 2}, "--antagonists") == ["b"]
    with pytest.raises(FlagError, match="expected a comma-separated list of a, b$"):
        parse_names("c", {"a": 1, "b": 2}, "--antagonists")

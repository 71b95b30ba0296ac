"""The lit training configuration: one factory, saved beside the weights, readable from older model files."""

from __future__ import annotations

import dataclasses

import pytest

from mmkg.encoders.lit_config import DEFAULTS, LitTrainConfig, holdout_split
from mmkg.errors import UserInputError


def test_create_takes_overrides_and_keeps_defaults_for_none() -> None:
    config = LitTrainConfig.create(epochs=3, hidden=None)
    assert config.epochs == 3
    assert config.hidden == LitTrainConfig().hidden
    assert dict(DEFAULTS) == LitTrainConfig().as_dict()


def test_an_unknown_option_is_a_user_error() -> None:
    with pytest.raises(UserInputError, match="unknown training option.*learning_rate"):
        LitTrainConfig.create(learning_rate=1.0)


def test_config_is_frozen() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        LitTrainConfig().epochs = 1  # type: ignore[misc]


def test_a_saved_config_reads_back_and_an_older_one_takes_defaults() -> None:
    config = LitTrainConfig.create(epochs=7, multilingual=True)
    saved = {"training": {"hyperparams": config.as_dict()}}
    assert LitTrainConfig.from_saved(saved) == config
    # A model written before ml_latin_captions existed, with an option this version no longer knows.
    old = {k: v for k, v in config.as_dict().items() if k != "ml_latin_captions"} | {"retired_option": 1}
    restored = LitTrainConfig.from_saved({"training": {"hyperparams": old}})
    assert restored.epochs == 7 and restored.ml_latin_captions == LitTrainConfig().ml_latin_captions
    assert LitTrainConfig.from_saved({}) == LitTrainConfig()


def test_holdout_split_is_order_free_and_capped_at_a_fifth() -> None:
    keys = [f"img{i}.jpg" for i in range(50)]
    fit, ho = holdout_split(keys, 500, 0)
    assert len(ho) == 10 and len(fit) == 40 and not set(fit) & set(ho)
    _, ho_reversed = holdout_split(keys[::-1], 500, 0)
    assert sorted(keys[i] for i in ho) == sorted(keys[::-1][i] for i in ho_reversed)

"""TrainConfig.from_data: data given directly have their own constructor, so `train=` is
only ever the TrainArgs group (the old `TrainConfig(train=<data>)` still works, warned)."""

from __future__ import annotations

import warnings

import pandas as pd
import pytest

from gptclassify.args import DataConfig, TrainArgs, TrainConfig


def test_from_data_puts_the_parts_and_data_options_in_data_and_the_rest_in_their_groups():
    df = pd.DataFrame({"body": ["a", "b"], "label": ["x", "y"]})
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the new spelling warns about nothing
        cfg = TrainConfig.from_data(
            train=df, validation="v.csv", text_column="body", lr=1e-4, pool="last", out="o"
        )
        named = TrainConfig.from_data("sms-spam", sms_download=True, epochs=2)
    assert cfg.data.train is df and cfg.data.validation == "v.csv" and cfg.data.test is None
    assert cfg.data.text_column == "body" and cfg.train.lr == 1e-4 and cfg.inputs.pool == "last"
    assert cfg.out == "o" and isinstance(cfg.train, TrainArgs)
    assert named.data.data == "sms-spam" and named.data.sms_download and named.train.epochs == 2
    # The recorded config names the in-memory table, as before.
    assert cfg.to_dict()["data"]["train"] == "in-memory: DataFrame (2 rows)"


def test_the_old_train_equals_data_call_still_works_with_a_deprecation_warning():
    with pytest.warns(DeprecationWarning, match=r"TrainConfig.from_data\(train=\.\.\.\)"):
        old = TrainConfig(train="f.csv", text_column="body", lr=1e-4)
    new = TrainConfig.from_data(train="f.csv", text_column="body", lr=1e-4)
    assert old.to_dict() == new.to_dict()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the group itself is not deprecated
        assert TrainConfig(train=TrainArgs(lr=1e-3)).train.lr == 1e-3
        assert TrainConfig(train={"lr": 1e-3}).train.lr == 1e-3


def test_from_data_refuses_a_data_config_and_unknown_names():
    with pytest.raises(TypeError, match="a DataConfig goes to TrainConfig\\(data=...\\)"):
        TrainConfig.from_data(DataConfig(data="sms-spam"))
    with pytest.raises(TypeError, match="unexpected keyword argument 'lrr'"):
        TrainConfig.from_data(train="f.csv", lrr=1)

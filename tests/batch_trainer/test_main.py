"""The entry point's wiring: settings from the environment and the injected data source."""

from __future__ import annotations

import doctest

import pytest

from services.batch_trainer import errors, plots
from services.batch_trainer.__main__ import load_training_data
from services.batch_trainer.errors import BatchTrainerError
from services.batch_trainer.settings import BatchTrainerSettings


@pytest.mark.parametrize("module", [errors, plots])
def test_doctests(module: object) -> None:
    assert doctest.testmod(module).failed == 0  # type: ignore[arg-type]


def test_the_data_source_is_named_module_colon_function() -> None:
    from tests.batch_trainer.conftest import agrawal_frame

    assert load_training_data("tests.batch_trainer.conftest:agrawal_frame") is agrawal_frame
    with pytest.raises(BatchTrainerError, match="expected module:function"):
        load_training_data("tests.batch_trainer.conftest")
    with pytest.raises(BatchTrainerError, match="no_such_module"):
        load_training_data("no_such_module:frame")


def test_settings_read_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DRIFTLINE_DEVICE", "cpu")
    monkeypatch.setenv("DRIFTLINE_GROUP_ID", "trainers")
    settings = BatchTrainerSettings()
    assert (settings.device, settings.group_id, settings.mlflow_uri) == ("cpu", "trainers", None)

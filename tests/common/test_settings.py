"""Settings every service shares: consumer groups follow the prefix unless one is named."""

from __future__ import annotations

import pytest

from services.common.settings import CommonSettings


def test_a_service_group_is_the_prefix_and_its_name(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DRIFTLINE_GROUP_PREFIX", "stack2")
    settings = CommonSettings()
    assert settings.consumer_group("registry") == "stack2-registry"
    assert settings.consumer_group("online_trainer") == "stack2-online_trainer"


def test_a_named_group_overrides_the_prefix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DRIFTLINE_GROUP_ID", "trainers")
    assert CommonSettings().consumer_group("batch_trainer") == "trainers"


def test_a_group_name_with_spaces_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DRIFTLINE_GROUP_PREFIX", "two words")
    with pytest.raises(ValueError, match="group_prefix"):
        CommonSettings()

"""Snapshots are registered once per checkpointed state, against a real MLflow store."""

from __future__ import annotations

from pathlib import Path

import pytest

from schemas.usecase import UseCase
from services.common import tracking
from services.online_trainer.checkpoint import TrainerState
from services.online_trainer.service import fresh_state
from services.online_trainer.snapshot import (
    SNAPSHOT_TAG,
    register_snapshot,
    registered_name,
    snapshot_key,
)
from tests.online_trainer.conftest import agrawal_rows, agrawal_spec

pytestmark = pytest.mark.integration


def learned_state(rows: int, offset: int) -> tuple[UseCase, TrainerState]:
    spec = agrawal_spec("snap")
    state = fresh_state(spec)
    for features, label in agrawal_rows(rows, seed=3):
        state.learner.learn_one(features, label)
    state.offsets = {"snap.labels:0": offset, "snap.features:0": offset}
    return spec, state


def versions(home: Path, name: str) -> list[str]:
    found = tracking.client(home).search_model_versions(f"name = '{name}'")
    return sorted(str(v.version) for v in found)


def test_the_same_state_is_registered_once(home: Path) -> None:
    spec, state = learned_state(120, offset=120)
    first = register_snapshot(home, spec, state, home)
    again = register_snapshot(home, spec, state, home)  # a restart from the same checkpoint
    assert again == first
    assert versions(home, registered_name(spec)) == [first.model_version]

    state.offsets["snap.labels:0"] += 1  # one more row read: another snapshot
    other = register_snapshot(home, spec, state, home)
    assert other.model_version != first.model_version
    assert other.event_id != first.event_id


def test_a_snapshot_killed_before_its_candidate_was_recorded_is_replaced(home: Path) -> None:
    spec, state = learned_state(80, offset=80)
    client = tracking.client(home)
    experiment = tracking.experiment_id(home, spec.name)
    key = snapshot_key(spec, state)
    # What a kill between registering the version and recording the candidate leaves.
    run_id = client.create_run(experiment, tags={SNAPSHOT_TAG: key}).info.run_id
    model_file = state.learner.model.save(home / "orphan")
    orphan, _, _ = tracking.register_model_dir(
        client, run_id, registered_name(spec), home / "orphan", model_file
    )

    candidate = register_snapshot(home, spec, state, home)
    assert versions(home, registered_name(spec)) == [candidate.model_version]
    assert candidate.model_version != orphan
    assert client.get_run(run_id).info.status == "KILLED"

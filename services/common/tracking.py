"""MLflow: where runs, metrics, artifacts and model versions live.

The embedded profile keeps a SQLite store and the artifacts under
``DRIFTLINE_HOME/mlflow``; the production profile points
``DRIFTLINE_MLFLOW_URI`` at a tracking server (PostgreSQL behind it).
mlflow is imported inside these functions: it costs 2 s and 200 MB.
"""

from __future__ import annotations

import fcntl
import logging
import tempfile
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlparse

from schemas.events import ModelCandidate, Promotion
from services.common.models.protocol import Model, sha256_of

if TYPE_CHECKING:
    from mlflow.tracking import MlflowClient

logger = logging.getLogger(__name__)

CHAMPION = "champion"
CHALLENGER = "challenger"
CANDIDATE_ARTIFACT = "candidate.json"


def tracking_uri(home: Path, override: str | None = None) -> str:
    """The MLflow tracking URI: ``override`` when set, else SQLite under ``home``."""
    if override:
        return override
    directory = (home / "mlflow").resolve()
    directory.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{directory / 'mlflow.db'}"


def artifact_root(home: Path) -> str:
    """Where the embedded profile stores artifacts (a file URI under ``home``)."""
    directory = (home / "mlflow" / "artifacts").resolve()
    directory.mkdir(parents=True, exist_ok=True)
    return directory.as_uri()


def client(home: Path, override: str | None = None) -> MlflowClient:
    """An MLflow client bound to this stack's store (and the global tracking URI set to it).

    On SQLite the first use of a new store creates and migrates its tables;
    several services starting on a new home would race at it (alembic: "Online
    migration expected to match one row ... 0 found", seen on a first
    ``make demo``), so that first use is serialised by a lock file beside it.
    """
    import mlflow
    from mlflow.tracking import MlflowClient

    uri = tracking_uri(home, override)
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    if not uri.startswith("sqlite:") or uri in _OPENED:
        return MlflowClient(tracking_uri=uri, registry_uri=uri)
    with (home / "mlflow" / "init.lock").open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released on close, or by the kernel on a kill
        mlflow_client = MlflowClient(tracking_uri=uri, registry_uri=uri)  # creates the tables
        mlflow_client.search_registered_models(max_results=1)  # and the registry's
    _OPENED.add(uri)
    return mlflow_client


# SQLite stores this process has opened: mlflow keeps each store (and its tables) for the
# process, so the locked first use is paid once, not by every client (0.1-0.25 s each:
# the registry search, four times a training request).
_OPENED: set[str] = set()


def experiment_id(home: Path, name: str, override: str | None = None) -> str:
    """The id of experiment ``name``, created with its artifacts under ``home`` if new."""
    mlflow_client = client(home, override)
    experiment = mlflow_client.get_experiment_by_name(name)
    if experiment is not None:
        return str(experiment.experiment_id)
    location = None if override else f"{artifact_root(home)}/{name}"
    return str(mlflow_client.create_experiment(name, artifact_location=location))


def register_model_dir(
    mlflow_client: MlflowClient,
    run_id: str,
    model_name: str,
    model_dir: Path,
    model_file: Path,
    tags: dict[str, Any] | None = None,
) -> tuple[str, str, str]:
    """Log ``model_dir`` as the run's ``model`` artifact and register it as a new version.

    Returns (version, artifact_uri, sha256 of ``model_file``).
    """
    from mlflow.exceptions import MlflowException

    sha256 = sha256_of(model_file)
    mlflow_client.log_artifacts(run_id, str(model_dir), artifact_path="model")
    run = mlflow_client.get_run(run_id)
    artifact_uri = f"{run.info.artifact_uri}/model"
    try:
        mlflow_client.create_registered_model(model_name)
    except MlflowException:
        pass  # already registered; a new version is added below
    all_tags = {"artifact_sha256": sha256, **{k: str(v) for k, v in (tags or {}).items()}}
    version = mlflow_client.create_model_version(
        model_name, source=artifact_uri, run_id=run_id, tags=all_tags
    )
    return str(version.version), artifact_uri, sha256


def register_model(
    home: Path, model: Model, model_name: str, scratch: Path
) -> tuple[str, str, str]:
    """Save ``model`` under ``scratch``, log it to a new run, register it.

    Returns (version, artifact_uri, sha256), as ``register_model_dir`` does.
    """
    mlflow_client = client(home)
    run_id = mlflow_client.create_run(experiment_id(home, model_name)).info.run_id
    directory = scratch / uuid.uuid4().hex
    path = model.save(directory)
    return register_model_dir(mlflow_client, run_id, model_name, directory, path)


def register_champion(
    home: Path, usecase: str, model: Model, model_name: str, scratch: Path, *, reason: str
) -> Promotion:
    """Register ``model`` and return the promotion that makes it ``usecase``'s champion."""
    version, uri, sha = register_model(home, model, model_name, scratch)
    return Promotion(
        usecase=usecase,
        action="promote",
        model_name=model_name,
        model_version=version,
        artifact_uri=uri,
        artifact_sha256=sha,
        reason=reason,
    )


def local_artifact_dir(artifact_uri: str) -> Path | None:
    """The directory a ``file:`` artifact URI names on this machine, else None.

    MLflow's download of such a URI copies that directory (its local artifact
    repository); a reader that only needs the files can open them there and
    skip importing mlflow.

    >>> import tempfile; folder = Path(tempfile.mkdtemp())
    >>> local_artifact_dir(folder.as_uri()) == folder
    True
    >>> local_artifact_dir((folder / "gone").as_uri()), local_artifact_dir("s3://bucket/m")
    (None, None)
    """
    parsed = urlparse(artifact_uri)
    if parsed.scheme != "file" or parsed.netloc not in ("", "localhost"):
        return None
    path = Path(unquote(parsed.path))
    return path if path.is_dir() else None


def download_model_dir(mlflow_client: MlflowClient, artifact_uri: str, destination: Path) -> Path:
    """Fetch a model directory from its artifact URI (a local path for file URIs)."""
    import mlflow

    destination.mkdir(parents=True, exist_ok=True)
    path = mlflow.artifacts.download_artifacts(artifact_uri=artifact_uri, dst_path=str(destination))
    return Path(path)


# ---- registering a candidate once, by a key (a training request, a snapshot) -----------
#
# A trainer tags its run with a key, registers the model, then stores the candidate
# event with the run (``record_candidate``) before publishing it. A trainer killed
# and restarted on the same key finds the recorded candidate and publishes it again
# (same event id, so consumers see it once), or discards what a run without one left.


def record_candidate(client: MlflowClient, run_id: str, candidate: ModelCandidate) -> None:
    """Store the candidate event with its run (``candidate.json``)."""
    client.log_text(run_id, candidate.model_dump_json(indent=2), CANDIDATE_ARTIFACT)


def earlier_candidate(
    client: MlflowClient, experiment: str, tag: str, value: str
) -> ModelCandidate | None:
    """The candidate a run tagged ``tag=value`` recorded; None after discarding the rest.

    No event names the model version a run without a recorded candidate may
    have registered (its candidate was never published), so the version is
    deleted (the retry registers its own) and the run is marked KILLED.
    """
    runs = client.search_runs([experiment], filter_string=f"tags.{tag} = '{value}'", max_results=50)
    unfinished = []
    for run in runs:
        run_id = run.info.run_id
        if any(item.path == CANDIDATE_ARTIFACT for item in client.list_artifacts(run_id)):
            with tempfile.TemporaryDirectory() as scratch:
                path = client.download_artifacts(run_id, CANDIDATE_ARTIFACT, scratch)
                return ModelCandidate.model_validate_json(Path(path).read_text())
        unfinished.append(run)
    for run in unfinished:
        for version in client.search_model_versions(f"run_id = '{run.info.run_id}'"):
            client.delete_model_version(version.name, version.version)
            logger.info(
                "deleted unfinished model=%s version=%s %s=%s",
                version.name, version.version, tag, value,
            )  # fmt: skip
        if run.info.status in ("RUNNING", "SCHEDULED"):
            client.set_terminated(run.info.run_id, "KILLED")
    return None

"""The loaded champion and challenger of each use case, swapped atomically.

Each use case's lineup is read from its fold of the promotion history
(:class:`~services.common.promotions.history.PromotionHistory`, the one every
reader of the log uses); an event enters that fold only once inference has
accepted it. A promotion is applied in two steps: every model of the new lineup that is
not loaded yet is downloaded and loaded (its sha256 checked) in a worker
thread, then one reference per use case is replaced. A request reads that
reference once, so it finishes with the models it started with, and no
request ever sees a half-loaded model. A model that fails to load (a sha256
mismatch, a missing artifact) refuses the whole promotion: the old lineup
keeps serving and ``on_refused`` is told.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from schemas.events import Promotion
from schemas.usecase import UseCase
from services.common.models import Model, load_model
from services.common.models.protocol import ArtifactMismatch
from services.common.promotions.history import ModelRef, PromotionHistory
from services.common.tracking import local_artifact_dir
from services.inference.errors import ModelRefused, NoChampion, UnknownUseCase
from services.inference.lineup import Lineup, check_servable

logger = logging.getLogger(__name__)

Loader = Callable[[ModelRef], Model]
OnRefused = Callable[[Promotion, ModelRefused], Awaitable[None]]
OnSwap = Callable[[str], None]


@dataclass(frozen=True)
class LoadedModel:
    """A model in memory and the reference it was loaded from."""

    ref: ModelRef
    model: Model
    loaded_at: float = field(default_factory=time.time)


@dataclass(frozen=True)
class Serving:
    """What answers a use case right now; replaced whole, never mutated."""

    lineup: Lineup = field(default_factory=Lineup)
    champion: LoadedModel | None = None
    challenger: LoadedModel | None = None


class MlflowLoader:
    """Loads a model's artifact from MLflow, keeping a verified copy by sha256 for restarts.

    An artifact is immutable and named by its sha256, so a copy in ``cache`` is
    as good as MLflow's: a restarted service loads the champion it served from
    there (the sha256 checked again) without importing mlflow, in milliseconds.
    The cache keeps the ``keep`` most recently used models; :meth:`warm` loads
    the most recent ones in the background at start, so a restarted service
    has the champion it served in memory (its flavor's imports paid) before
    the promotion naming it arrives. An artifact in MLflow's file store (a
    ``file:`` URI, the embedded profile) is read from there directly, the same
    bytes without importing mlflow. A torch model
    with an ONNX export answers through onnxruntime when it is installed,
    the export's sha256 checked too (:func:`~services.common.models.load_model`).
    """

    def __init__(
        self, home: Path, scratch: Path, mlflow_uri: str | None = None, *, keep: int = 8
    ) -> None:
        self.home = home
        self.scratch = scratch
        self.cache = scratch / "by-sha256"
        self.mlflow_uri = mlflow_uri
        self.keep = keep
        self._client: Any = None
        self._warmed: dict[str, Model] = {}
        self._warming: threading.Thread | None = None

    def warm(self, count: int) -> None:
        """Load the ``count`` most recently used cached models in a background thread.

        A request for one of them (:meth:`__call__`, by sha256) takes it; the
        others stay loaded until asked for (at most ``count``, one a use case).
        """
        if count <= 0 or not self.cache.is_dir() or self._warming is not None:
            return
        self._warming = threading.Thread(
            target=self._warm, args=(count,), name="model-warm", daemon=True
        )
        self._warming.start()

    def _warm(self, count: int) -> None:
        for entry in self._cached()[-count:]:
            try:
                self._warmed[entry.name] = load_model(
                    entry, expected_sha256=entry.name, prefer_onnx=True
                )
            except Exception:  # the request for it meets it again and handles it
                logger.info("cached model not warmed: %s", entry, exc_info=True)
            else:
                logger.info("cached model warmed sha256=%s", entry.name[:12])

    def _cached(self) -> list[Path]:
        """The cached copies, least recently used first."""
        return sorted(
            (entry for entry in self.cache.iterdir() if not entry.name.startswith(".")),
            key=lambda entry: entry.stat().st_mtime,
        )

    def __call__(self, ref: ModelRef) -> Model:
        if ref.artifact_uri is None or ref.artifact_sha256 is None:
            # check_servable keeps such promotions out of the fold; this is the loader's guard
            raise ValueError(f"{ref.label} names no artifact_uri or artifact_sha256")
        if self._warming is not None:
            self._warming.join()  # it may be loading this very model: not twice at once
        cached = self.cache / ref.artifact_sha256
        warmed = self._warmed.pop(ref.artifact_sha256, None)
        if warmed is not None and cached.is_dir():  # loaded and checked by sha256 at start
            os.utime(cached)
            return warmed
        if cached.is_dir():
            try:
                model = load_model(cached, expected_sha256=ref.artifact_sha256, prefer_onnx=True)
            except Exception:  # a damaged copy: MLflow's is the truth
                logger.warning("cached model unusable, fetching again: %s", cached, exc_info=True)
                shutil.rmtree(cached, ignore_errors=True)
            else:
                os.utime(cached)
                return model
        return self._download(ref, ref.artifact_uri, ref.artifact_sha256)

    def _download(self, ref: ModelRef, uri: str, sha256: str) -> Model:
        local = local_artifact_dir(uri)
        if local is not None:  # MLflow's file store: what its download would copy, read here
            model = load_model(local, expected_sha256=sha256, prefer_onnx=True)
            self._keep_copy(local, sha256)
            return model
        os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
        from services.common import tracking

        if self._client is None:
            self._client = tracking.client(self.home, self.mlflow_uri)
        self.scratch.mkdir(parents=True, exist_ok=True)
        directory = Path(tempfile.mkdtemp(prefix=f"{ref.name}-{ref.version}-", dir=self.scratch))
        try:
            path = tracking.download_model_dir(self._client, uri, directory)
            model = load_model(path, expected_sha256=sha256, prefer_onnx=True)
            self._keep_copy(path, sha256)
            return model
        finally:
            shutil.rmtree(directory, ignore_errors=True)

    def _keep_copy(self, path: Path, sha256: str) -> None:
        self.cache.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{sha256[:12]}-", dir=self.cache))
        shutil.copytree(path, staging, dirs_exist_ok=True)
        try:
            staging.rename(self.cache / sha256)  # atomic: a copy is whole or absent
        except OSError:  # another process (a replica) kept it first
            shutil.rmtree(staging, ignore_errors=True)
        kept = self._cached()
        for old in kept[: max(0, len(kept) - self.keep)]:
            shutil.rmtree(old, ignore_errors=True)


class LoadedModels:
    """The serving state of every use case, and the one way it changes."""

    def __init__(
        self,
        specs: Mapping[str, UseCase],
        loader: Loader,
        on_refused: OnRefused | None = None,
        on_swap: OnSwap | None = None,
    ) -> None:
        self.specs = dict(specs)
        self.loader = loader
        self.on_refused = on_refused
        self.on_swap = on_swap
        self._serving: dict[str, Serving] = {name: Serving() for name in self.specs}
        self._history: dict[str, PromotionHistory] = {
            name: PromotionHistory() for name in self.specs
        }
        self._lock = asyncio.Lock()
        self.swaps = 0
        self.refusals = 0
        warm = getattr(loader, "warm", None)
        if warm is not None:  # a restart's champion, loaded while the service starts
            warm(len(self.specs))

    def serving(self, usecase: str) -> Serving:
        """The current serving state of ``usecase`` (one read: a consistent snapshot)."""
        try:
            return self._serving[usecase]
        except KeyError:
            raise UnknownUseCase(usecase, sorted(self._serving)) from None

    def champion(self, usecase: str) -> Serving:
        """Like :meth:`serving`, but raises :class:`NoChampion` before the first promotion."""
        serving = self.serving(usecase)
        if serving.champion is None:
            raise NoChampion(usecase)
        return serving

    async def apply(self, promotion: Promotion) -> bool:
        """Apply one live promotion; False when it was refused or is for another service.

        The fold keeps the event only once its lineup is loaded: a refused
        promotion changes neither what serves nor the history it is read from.
        """
        if promotion.usecase not in self.specs:
            return False
        async with self._lock:
            history = self._history[promotion.usecase]
            state = history.after(promotion)
            if state is None:
                return True  # applied already (a redelivered event)
            current = self._serving[promotion.usecase]
            try:
                check_servable(promotion)
                lineup = Lineup.of(state)
                serving = current if lineup == current.lineup else await self._load(lineup, current)
            except ModelRefused as refusal:
                await self._refuse(promotion, refusal)
                return False
            history.keep(promotion, state)
            self._swap(promotion.usecase, serving)
            return True

    async def replay(self, history: Sequence[Promotion]) -> None:
        """Rebuild every use case's lineup from the whole promotion history, then load it.

        Only the final lineup is loaded. When one of its models is refused, the
        event that brought it is dropped from the history and the fold redone,
        which is exactly what live application would have done.
        """
        async with self._lock:
            for usecase in self.specs:
                events = [p for p in history if p.usecase == usecase]
                while True:
                    folded = self._fold(events)
                    lineup = Lineup.of(folded.get(usecase))
                    try:
                        serving = await self._load(lineup, self._serving[usecase])
                    except ModelRefused as refusal:
                        index = _introduced_by(events, refusal)
                        await self._refuse(events[index], refusal)
                        events = events[:index] + events[index + 1 :]
                        continue
                    self._history[usecase] = folded
                    self._swap(usecase, serving)
                    break

    @staticmethod
    def _fold(events: Sequence[Promotion]) -> PromotionHistory:
        history = PromotionHistory()
        for promotion in events:
            try:
                check_servable(promotion)
            except ModelRefused as refusal:
                logger.warning("promotion skipped on replay reason=%s", refusal.reason)
                continue
            history.apply(promotion)
        return history

    async def _load(self, lineup: Lineup, current: Serving) -> Serving:
        loaded = {_key(m.ref): m for m in (current.champion, current.challenger) if m is not None}
        for ref in lineup.refs():
            if _key(ref) not in loaded:
                loaded[_key(ref)] = LoadedModel(ref, await asyncio.to_thread(self._load_one, ref))

        def pick(ref: ModelRef | None) -> LoadedModel | None:
            return loaded[_key(ref)] if ref is not None else None

        return Serving(lineup, pick(lineup.champion), pick(lineup.challenger))

    def _load_one(self, ref: ModelRef) -> Model:
        started = time.perf_counter()
        try:
            model = self.loader(ref)
        except ArtifactMismatch as exc:
            raise ModelRefused(
                f"artifact sha256 mismatch: {exc}", model_name=ref.name, model_version=ref.version
            ) from exc
        except Exception as exc:  # a missing or unreadable artifact: refuse, keep serving
            raise ModelRefused(
                f"cannot load {ref.name} v{ref.version} from {ref.artifact_uri}: "
                f"{type(exc).__name__}: {exc}",
                model_name=ref.name,
                model_version=ref.version,
            ) from exc
        logger.info(
            "model loaded name=%s version=%s sha256=%s seconds=%.3f",
            ref.name,
            ref.version,
            (ref.artifact_sha256 or "")[:12],
            time.perf_counter() - started,
        )
        return model

    def _swap(self, usecase: str, serving: Serving) -> None:
        previous = self._serving[usecase]
        self._serving[usecase] = serving  # the swap: one reference, atomic for readers
        if serving.lineup != previous.lineup:
            self.swaps += 1
            logger.info(
                "serving usecase=%s champion=%s challenger=%s mode=%s share=%s",
                usecase,
                _label(serving.lineup.champion),
                _label(serving.lineup.challenger),
                serving.lineup.mode,
                serving.lineup.share,
            )
            if self.on_swap is not None:
                self.on_swap(usecase)

    async def _refuse(self, promotion: Promotion, refusal: ModelRefused) -> None:
        self.refusals += 1
        logger.error(
            "promotion refused usecase=%s action=%s model=%s version=%s reason=%s",
            promotion.usecase,
            promotion.action,
            promotion.model_name,
            promotion.model_version,
            refusal.reason,
        )
        if self.on_refused is not None:
            await self.on_refused(promotion, refusal)


def _introduced_by(events: Sequence[Promotion], refusal: ModelRefused) -> int:
    """The index of the last event that named the refused model."""
    for index in range(len(events) - 1, -1, -1):
        event = events[index]
        if (event.model_name, event.model_version) == (refusal.model_name, refusal.model_version):
            return index
    return len(events) - 1


def _key(ref: ModelRef) -> tuple[str, str, str | None]:
    """What a loaded model is kept under: the same model with the same artifact bytes."""
    return (ref.name, ref.version, ref.artifact_sha256)


def _label(ref: ModelRef | None) -> str:
    return f"{ref.name}/v{ref.version}" if ref is not None else "-"


def serve_single_threaded() -> None:
    """One intra-op thread for torch's operations called from this thread.

    The scoring thread calls it before its first torch forward (OpenMP keeps
    the setting per calling thread). A request's MLP is small: torch's thread
    pool gains nothing on it, and on a busy 2-core machine its threads wait on
    each other (64 rows: about 21 ms with torch's 2 threads, 1.9 ms with one,
    measured beside B5's load).
    """
    import torch

    if torch.get_num_threads() != 1:
        torch.set_num_threads(1)

"""Following who serves: the promotion history, replayed at start, then live, on every log.

:class:`PromotionFollower` owns the consumer on ``models.promotions``. Its
:meth:`~PromotionFollower.start` replays the whole history into the
loaded models (the service is not ready before), then two background tasks keep
the loaded models current: the listener applies each new promotion, and the log
watch notices a new broker log (a broker restarted without its data) and
follows that log's promotion history from its beginning. The loaded lineup
keeps serving meanwhile; the promoter puts MLflow's champion on the new log,
which changes nothing here when it is the same.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterable

from aiokafka import AIOKafkaConsumer

from schemas import topics
from services.common import bus
from services.common.bus import CONTROL_FETCH_WAIT_MS, start_consumer
from services.common.epoch import log_epoch, watch_log
from services.common.runtime import BROKER_ERRORS
from services.inference.loaded import LoadedModels
from services.inference.promotions import PromotionListener
from services.inference.settings import InferenceSettings

logger = logging.getLogger(__name__)


async def ensure_service_topics(settings: InferenceSettings, usecases: Iterable[str]) -> None:
    """The topics inference declares it reads and writes, on the broker's current log."""
    await bus.ensure_service_topics(settings, "inference", usecases)


class PromotionFollower:
    """Keeps ``models`` following the promotion history of the broker's current log.

    ``on_stopped`` is called when the listener fails: lineups no longer follow
    promotions, and the service should stop saying it is ready.
    """

    def __init__(
        self,
        settings: InferenceSettings,
        models: LoadedModels,
        on_stopped: Callable[[], None],
    ) -> None:
        self.settings = settings
        self.models = models
        self.on_stopped = on_stopped
        self.consumer: AIOKafkaConsumer | None = None
        self.listener: PromotionListener | None = None
        self._stop = asyncio.Event()
        self._listen_task: asyncio.Task[None] | None = None
        self._watch_task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Replay the history into the models, then follow it and the log in the background."""
        settings = self.settings
        self.consumer = await self._open_consumer()
        self.listener = PromotionListener(self.consumer, self.models, settings.poll_timeout_ms)
        await self.listener.replay()
        self._listen_task = asyncio.create_task(self._listen(), name="promotion-listener")
        epoch = await log_epoch(settings.bootstrap)
        self._watch_task = asyncio.create_task(self._follow_log(epoch), name="log-watch")

    async def stop(self) -> None:
        """Stop both background tasks and close the consumer."""
        self._stop.set()
        await _cancel(self._watch_task)
        await _cancel(self._listen_task)
        if self.consumer is not None:
            await self.consumer.stop()

    async def _open_consumer(self) -> AIOKafkaConsumer:
        return await start_consumer(
            self.settings.bootstrap,
            [topics.MODELS_PROMOTIONS],
            None,
            mode="assign",
            fetch_max_wait_ms=CONTROL_FETCH_WAIT_MS,
        )

    async def _follow_log(self, epoch: str) -> None:
        """On a new broker log: its topics, and its promotion history read from the beginning."""
        settings = self.settings
        while not self._stop.is_set():
            await watch_log(settings.bootstrap, epoch)
            try:
                new_epoch = await log_epoch(settings.bootstrap)
                await ensure_service_topics(settings, self.models.specs)
                await _cancel(self._listen_task)
                if self.consumer is not None:
                    await self.consumer.stop()
                self.consumer = await self._open_consumer()
            except BROKER_ERRORS as exc:  # the broker went away again: the watch tells when back
                logger.warning("could not follow the new broker log yet: %s", exc)
                continue
            await self.consumer.seek_to_beginning(*self.consumer.assignment())
            self.listener = PromotionListener(self.consumer, self.models, settings.poll_timeout_ms)
            self._listen_task = asyncio.create_task(self._listen(), name="promotion-listener")
            epoch = new_epoch
            logger.warning("new broker log epoch=%s: following its promotion history", epoch)

    async def _listen(self) -> None:
        assert self.listener is not None
        try:
            await self.listener.run(self._stop)
        except asyncio.CancelledError:
            raise
        except Exception:
            logger.exception("promotion listener stopped; lineups no longer follow promotions")
            self.on_stopped()


async def _cancel(task: asyncio.Task[None] | None) -> None:
    if task is not None:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

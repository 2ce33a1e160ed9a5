"""B5's second size and the prediction log's cost (:mod:`bench.serving` reports both).

A champion at 1 and at :data:`ITEMS` items a request says how the cost of an
item changes with the request's size; the prediction log's CPU a prediction
is measured in this process, on the request path (the journal line) and off
it (validation, record batches, the acknowledgement).
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from bench.load import LoadStats
from bench.runner import median
from schemas import topics

ITEMS = 64  # the second size B5 reports: a list request of 64 items


def size_row(one: list[LoadStats], many: list[LoadStats]) -> dict[str, float]:
    """One champion at 1 and at ITEMS items a request: items/s, p99, and ms an item.

    >>> row = size_row([LoadStats(ok=1000, seconds=1.0)], [LoadStats(ok=100, seconds=1.0)])
    >>> row["items_per_s_1"], row["items_per_s_many"], row["cost_per_item_ratio"]
    (1000.0, 6400.0, 0.156)
    """
    rps_one = median([s.rps for s in one])
    rps_many = median([s.rps for s in many])
    return {
        "items_per_s_1": rps_one,
        "items_per_s_many": rps_many * ITEMS,
        "p99_ms_1": median([s.p99_ms for s in one]),
        "p99_ms_many": median([s.p99_ms for s in many]),
        "errors_many": float(sum(s.errors for s in many)),
        # the cost of an item at ITEMS a request against one a request (1.0: no change)
        "cost_per_item_ratio": round(rps_one / (rps_many * ITEMS), 3),
    }


def sizes_note(sizes: dict[str, dict[str, float]]) -> str:
    return "; ".join(
        f"{name} {row['items_per_s_many']:,.0f} items/s (1 a request: "
        f"{row['items_per_s_1']:,.0f}; cost an item x{row['cost_per_item_ratio']:.2f}), "
        f"p99 {row['p99_ms_many']:.1f} ms"
        for name, row in sizes.items()
    )


def prediction_log_cost(
    bootstrap: str, workdir: Path, usecase: str, count: int = 2000
) -> dict[str, float]:
    """CPU a prediction costs the inference service's log, measured in this process.

    The journal write is on the request path (before the answer returns); the
    shipping (validation, record batches, the broker's acknowledgement) runs
    in the service's background task, off it but on the same cores.
    """
    import tempfile
    import time

    from services.common.bus import FILLED_BATCH_BYTES, ensure_topics, start_producer
    from services.inference.predlog import PredictionLog

    record = {
        "usecase": usecase, "prediction_id": "p", "source_event_id": "e", "entity_id": "c",
        "model_name": usecase, "model_version": "1", "variant": "champion", "prediction": 1,
        "probabilities": {"0": 0.25, "1": 0.75}, "latency_ms": 1.0,
    }  # fmt: skip

    async def measure(directory: Path) -> dict[str, float]:
        await ensure_topics(bootstrap, [topics.predictions(usecase)])
        # the service's producer: record batches the log fills itself, up to this size
        producer = await start_producer(bootstrap, max_batch_size=FILLED_BATCH_BYTES)
        try:
            log = PredictionLog(producer, directory, linger_seconds=0.0)
            started = time.process_time()
            for index in range(count):
                log.submit({**record, "prediction_id": f"p{index}"})
            journal = time.process_time() - started
            started = time.process_time()
            await log.start()
            await log.stop()
            ship = time.process_time() - started
        finally:
            await producer.stop()
        return {"journal_us": journal / count * 1e6, "ship_us": ship / count * 1e6}

    with tempfile.TemporaryDirectory(dir=workdir) as directory:
        return asyncio.run(measure(Path(directory)))

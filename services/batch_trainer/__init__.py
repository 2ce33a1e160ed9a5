"""The batch trainer: trains a torch MLP, a linear baseline and the spec's classical contenders
(gradient-boosted trees) when a training request arrives; the best on validation is the candidate.

``pipeline.train_candidate`` is the pure part (data frame to split, tuning,
fit, test evaluation, model and report); ``tracking`` logs it to MLflow and
registers the model; ``service`` consumes ``training.requests`` and
publishes ``models.candidates``. torch, optuna, scikit-learn and mlflow are
imported by the modules that use them, never by this package's ``__init__``:
its one export, :func:`train_candidate` (for the benchmark suite), is imported
when first asked for.
"""

from typing import Any


def __getattr__(name: str) -> Any:
    if name == "train_candidate":
        from services.batch_trainer.pipeline import train_candidate

        return train_candidate
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

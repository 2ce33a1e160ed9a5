"""Hyperparameter search with Optuna: learning rate, batch size, width, depth, dropout, decay.

The spec's own configuration is always the first trial, so tuning can only
improve on it; the rest are drawn by a seeded TPE sampler and cut short by
the spec's pruner (Hyperband or median) on the per-epoch validation loss.
The search stops at the spec's trial count or time budget, whichever comes
first (only the trial count keeps a run exactly reproducible). The best
trial's fitted network is kept, so the winner is not trained twice.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field, replace
from typing import Any

import optuna

from schemas.usecase import TuningSpec
from services.batch_trainer.train import Fit, FitResult, HyperParams

logger = logging.getLogger(__name__)

BATCH_SIZES = (32, 64, 128, 256)


@dataclass
class TuningResult:
    """The winning parameters and fit, and one summary line per trial."""

    params: HyperParams
    fit: FitResult
    trials: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0


def suggest(trial: optuna.Trial, base: HyperParams) -> HyperParams:
    """One point of the search space around the spec's configuration."""
    width = trial.suggest_int("width", 16, 256, log=True)
    depth = trial.suggest_int("depth", 1, 3)
    return replace(
        base,
        hidden_layers=[max(4, width // 2**i) for i in range(depth)],
        learning_rate=trial.suggest_float("learning_rate", 1e-4, 3e-2, log=True),
        batch_size=trial.suggest_categorical("batch_size", BATCH_SIZES),
        dropout=trial.suggest_float("dropout", 0.0, 0.5),
        weight_decay=trial.suggest_float("weight_decay", 1e-6, 1e-2, log=True),
    )


def _pruner(spec: TuningSpec, max_epochs: int) -> optuna.pruners.BasePruner:
    if spec.pruner == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=1, max_resource=max_epochs)
    if spec.pruner == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=2)
    return optuna.pruners.NopPruner()


def tune(fit_with: Fit, *, base: HyperParams, tuning: TuningSpec, seed: int) -> TuningResult:
    """Search, minimizing the best validation loss; with 0 trials, fit the spec's configuration.

    ``fit_with`` fits the run's data with one trial's parameters; ``seed`` seeds the sampler.
    """
    started = time.monotonic()

    def fit(params: HyperParams, trial: optuna.Trial | None = None) -> FitResult:
        def report(epoch: int, val_loss: float) -> None:
            if trial is not None:
                trial.report(val_loss, epoch)
                if trial.should_prune():
                    raise optuna.TrialPruned(f"pruned at epoch {epoch}")

        return fit_with(params=params, on_epoch=report)

    if tuning.trials == 0:
        result = fit(base)
        return TuningResult(base, result, [], time.monotonic() - started)

    best: dict[str, Any] = {}

    def objective(trial: optuna.Trial) -> float:
        params = base if trial.user_attrs.get("from_spec") else suggest(trial, base)
        trial.set_user_attr("hyperparams", params.as_dict())
        result = fit(params, trial)
        if "fit" not in best or result.best_val_loss < best["fit"].best_val_loss:
            best.update(fit=result, params=params)
        return result.best_val_loss

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(
        direction="minimize",
        sampler=optuna.samplers.TPESampler(seed=seed),
        pruner=_pruner(tuning, base.max_epochs),
        study_name=f"batch-{seed}",
    )
    study.enqueue_trial({}, user_attrs={"from_spec": True})
    study.optimize(objective, n_trials=tuning.trials, timeout=tuning.timeout_seconds)
    trials = [
        {
            "number": t.number,
            "state": t.state.name.lower(),
            "value": t.value,
            "params": t.user_attrs.get("hyperparams"),
        }
        for t in study.trials
    ]
    if "fit" not in best:  # every trial pruned or failed: fall back to the spec's configuration
        best.update(fit=fit(base), params=base)
    logger.info(
        "tuning done trials=%d complete=%d pruned=%d best_val_loss=%.5f",
        len(trials),
        sum(t["state"] == "complete" for t in trials),
        sum(t["state"] == "pruned" for t in trials),
        best["fit"].best_val_loss,
    )
    return TuningResult(best["params"], best["fit"], trials, time.monotonic() - started)

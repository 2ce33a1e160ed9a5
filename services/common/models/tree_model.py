"""The tree adapter: scikit-learn's histogram gradient-boosted trees, a batch contender.

``HistGradientBoostingClassifier`` / ``Regressor`` fit on the same
standardized inputs as the MLP and the linear model (a tree does not need the
scaling, but one preprocessing for every family keeps the split, the imputation
and the served inputs the same). Classifiers score one raw value per class
(log-odds of the positive class for binary ones, per-class logits for
multiclass); regressors the standardized target, scaled back here.

The file is the scikit-learn estimator pickled with the common state (there
is no portable format for these trees that onnxruntime or numpy could serve
without reimplementing them): like the river adapter's file, it must be read
only after its sha256 was checked (:func:`~services.common.models.load_model`
with ``expected_sha256``, as the promoter and inference do), because unpickling
runs code. The manifest records the scikit-learn version that wrote it.

A tree's score is explained exactly by TreeSHAP (``shap.TreeExplainer``,
imported on the first explanation): see :meth:`TreeModel.explain_array`.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any, ClassVar, Unpack

import numpy as np
import numpy.typing as npt

from services.common.models.protocol import Flavor, read_pickle, save_model_file
from services.common.models.tabular import TabularArguments, TabularModel

FILENAME = "model.pkl"
FORMAT_VERSION = 1
FloatArray = npt.NDArray[np.float64]


class TreeModel(TabularModel):
    """A fitted scikit-learn tree ensemble on standardized inputs.

    ``estimator.classes_`` are class indices into ``classes`` (the training
    part may lack a class: it gets probability 0).
    """

    flavor: ClassVar[Flavor] = "tree"

    def __init__(
        self,
        *,
        estimator: Any,
        **common: Unpack[TabularArguments],
    ) -> None:
        super().__init__(**common)
        if getattr(estimator, "n_features_in_", len(self.feature_names)) != len(self.feature_names):
            raise ValueError(
                f"the estimator takes {estimator.n_features_in_} features, "
                f"not {len(self.feature_names)}"
            )
        self.estimator = estimator
        self._explainer: Any = None

    # ---- arrays -----------------------------------------------------------------------

    def forward_array(self, matrix: FloatArray) -> FloatArray:
        """Raw scores per present class (``decision_function``), or the standardized target."""
        inputs = self.transform(matrix)
        if self.task == "regression":
            return np.asarray(self.estimator.predict(inputs), dtype=np.float64).reshape(-1, 1)
        raw = np.asarray(self.estimator.decision_function(inputs), dtype=np.float64)
        return raw.reshape(len(inputs), -1)

    def proba_array(self, matrix: FloatArray) -> FloatArray:
        self._require_classifier()
        assert self.classes is not None
        found = np.asarray(self.estimator.predict_proba(self.transform(matrix)), dtype=np.float64)
        result: FloatArray = np.zeros((len(found), len(self.classes)))
        result[:, [int(c) for c in self.estimator.classes_]] = found
        return result

    def explain_array(
        self, matrix: FloatArray, positive: Any = None
    ) -> tuple[FloatArray, FloatArray, FloatArray, list[str], list[Any]]:
        """TreeSHAP's ``(contributions, expected values, scores, units, explained classes)``.

        ``score = expected + sum(contributions)`` up to float rounding: binary
        classifiers explain the log-odds of ``positive`` (the last class
        unless told), multiclass ones the raw score (logit) of the predicted
        class, regressors the target.
        """
        inputs = self.transform(matrix)
        explainer = self._tree_explainer()
        values = np.asarray(explainer.shap_values(inputs, check_additivity=False))
        expected = np.atleast_1d(np.asarray(explainer.expected_value, dtype=np.float64))
        rows = len(inputs)
        if self.task == "regression":
            scale = self.target_scale
            scores = self.forward_array(matrix)[:, 0] * scale + self.target_mean
            base = np.full(rows, expected[0] * scale + self.target_mean)
            return values * scale, base, scores, ["target"] * rows, [None] * rows
        assert self.classes is not None
        present = [int(c) for c in self.estimator.classes_]
        raw = self.forward_array(matrix)
        if len(present) == 2:
            chosen = self.classes.index(positive) if positive in self.classes else present[1]
            sign = 1.0 if chosen == present[1] else -1.0
            picked = self.classes[present[1] if sign > 0 else present[0]]
            return (
                sign * values,
                np.full(rows, sign * expected[0]),
                sign * raw[:, 0],
                ["log_odds"] * rows,
                [picked] * rows,
            )
        winners = raw.argmax(axis=1)  # values: rows x features x present classes
        picked_values = values[np.arange(rows), :, winners]
        return (
            picked_values,
            expected[winners],
            raw[np.arange(rows), winners],
            ["logit"] * rows,
            [self.classes[present[k]] for k in winners],
        )

    def _tree_explainer(self) -> Any:
        if self._explainer is None:
            import shap

            self._explainer = shap.TreeExplainer(self.estimator)
        return self._explainer

    # ---- the model protocol: predictions in TabularModel ---------------------------------

    def save(self, directory: Path) -> Path:
        import sklearn

        state = self._state(FORMAT_VERSION, {"estimator": self.estimator})
        data = pickle.dumps(state, protocol=pickle.HIGHEST_PROTOCOL)
        return save_model_file(
            directory, "tree", FILENAME, lambda path: path.write_bytes(data), task=self.task,
            classes=self.classes, feature_names=self.feature_names,
            estimator=type(self.estimator).__name__, sklearn_version=sklearn.__version__,
        )  # fmt: skip

    @classmethod
    def load(cls, path: Path) -> TreeModel:
        state: dict[str, Any] = read_pickle(path, dict)
        arguments = cls._common_arguments(state, path, FORMAT_VERSION, "tree")
        return cls(estimator=state["estimator"], **arguments)

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_explainer"] = None  # rebuilt on the next explanation
        return state

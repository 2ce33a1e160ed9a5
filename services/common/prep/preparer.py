"""The preparer: a raw event in, a feature row out, driven only by the use-case spec.

``parse`` (size, JSON object) → ``validate`` (ids, timestamp, typed and
normalized field values, ranges, categories) → ``clean`` (imputation from
running statistics, caps, pseudonyms) → ``featurize`` (the spec's transforms).
Anything wrong with the event raises :class:`~services.common.errors.InvalidInput`
with a reason naming the field, what was expected and what came. How an
event's fields are read and checked is :mod:`services.common.prep.validation`.

>>> from schemas.usecase import UseCase
>>> spec = UseCase.model_validate({
...     "name": "toy", "task": "classification", "label": {"classes": [0, 1]},
...     "fields": {
...         "age": {"type": "int", "min": 18, "max": 100, "impute": "median"},
...         "plan": {"type": "category", "values": ["basic", "gold"],
...                  "aliases": {"premium": "gold"}, "unknown": "other"},
...     },
...     "features": [{"kind": "standardize", "field": "age", "mean": 40, "std": 10},
...                  {"kind": "onehot", "field": "plan"}],
... })
>>> preparer = Preparer(spec)
>>> event = {"event_id": "e1", "entity_id": "c1", "timestamp": "2026-01-01T00:00:00Z",
...          "age": 50, "plan": " Premium"}
>>> preparer.prepare(event).features
{'age_z': 1.0, 'plan_basic': 0.0, 'plan_gold': 1.0, 'plan_other': 0.0}
>>> preparer.prepare({**event, "event_id": "e2", "age": None, "plan": "silver"}).features
{'age_z': 1.0, 'plan_basic': 0.0, 'plan_gold': 0.0, 'plan_other': 1.0}
>>> preparer.prepare({**event, "age": "old"})
Traceback (most recent call last):
...
services.common.errors.InvalidInput: field 'age': expected an integer in [18, 100], got 'old'
"""

from __future__ import annotations

import hashlib
import json
import math
import uuid
from typing import Any

try:  # a JSON decoder about 5x faster than json's; json's answer is the reference
    from msgspec.json import Decoder as _FastDecoder
    from msgspec.json import Encoder as _FastEncoder

    _fast_loads: Any = _FastDecoder().decode
    _fast_dumps: Any = _FastEncoder().encode
except ImportError:  # pragma: no cover - msgspec is optional
    _fast_loads = None
    _fast_dumps = None

from schemas.events import FeatureRow
from schemas.usecase import FieldSpec, UseCase, UseCaseError
from services.common.errors import InvalidInput
from services.common.prep import transforms
from services.common.prep.stats import Statistic, new_statistic, restore_statistic
from services.common.prep.validation import Record, Validator, clip, describe
from services.common.prep.values import parse_bool, parse_number, pseudonymize, show

__all__ = ["STATE_VERSION", "Preparer", "Record", "feature_row_id"]

STATE_VERSION = 1
_ROW_ID_NAMESPACE = uuid.UUID("5f0c7c55-9a4e-4c8e-9d7e-6a3f4d1f2b10")
_ROW_ID_SHA1 = hashlib.sha1(_ROW_ID_NAMESPACE.bytes)
# RFC 4122's version 5 (the high nibble of byte 6) and variant (the top bits of byte 8)
_ROW_ID_KEEP = ~((0xF0 << 72) | (0xC0 << 56)) & (1 << 128) - 1
_ROW_ID_SET = (0x50 << 72) | (0x80 << 56)
_SIZE_ENCODER = json.JSONEncoder(default=str)  # json.dumps(..., default=str), made once
# json.dumps writes at most 6 bytes for each byte of msgspec's compact UTF-8 (a control
# character as \u0000, a separator with its space, "Infinity" for null): an event whose
# compact form is within a sixth of the limit is within the limit, with no exact count.
_SIZE_BOUND = 6


class Preparer:
    """Validate, clean and featurize raw events of one use case.

    Parameters
    ----------
    spec
        The use case.
    state
        What :meth:`state` returned earlier (a checkpoint); None starts fresh.
    salt
        Secret mixed into pseudonyms; services pass it from their settings.
    """

    def __init__(
        self, spec: UseCase, state: dict[str, Any] | None = None, *, salt: str = ""
    ) -> None:
        self.spec = spec
        self.salt = salt
        self.feature_names = spec.feature_names()
        self._validator = Validator(spec)
        self._stats: dict[str, Statistic] = {}
        for name, f in spec.fields.items():
            statistic = new_statistic(f.impute)
            if statistic is not None:
                self._stats[name] = statistic
        self.rows = 0
        if state is not None:
            self._restore(state)
        # Worked out once, used for every event.
        self._fields = list(spec.fields.items())
        # What cleaning asks of each field, read from its spec once: (name, spec, cap,
        # whether it is an integer, whether it is pseudonymized).
        self._cleaning = [
            (name, f, f.cap, f.type == "int", f.pseudonymize) for name, f in self._fields
        ]
        self._compiled = [transforms.compile_transform(t, spec) for t in spec.features]
        key_spec = spec.fields.get(spec.entity_key)
        self._pseudonymize_entity = key_spec is not None and key_spec.pseudonymize

    # ---- parse -------------------------------------------------------------

    def parse(self, raw: bytes | str) -> dict[str, Any]:
        """A raw message as a JSON object, within the size limit.

        Raises
        ------
        InvalidInput
            Too large, not JSON, or JSON that is not an object.
        """
        if isinstance(raw, str):
            raw = raw.encode()
        self._check_size(len(raw))
        if _fast_loads is not None:
            try:
                value = _fast_loads(raw)
            except Exception:  # whatever it refuses, json decides, with json's reason
                pass
            else:
                if isinstance(value, dict):
                    return value
        try:
            value = json.loads(raw)
        except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError, over-long integers
            raise InvalidInput(f"not valid JSON: {exc}") from exc
        except RecursionError:
            raise InvalidInput("not valid JSON: nested too deeply") from None
        if not isinstance(value, dict):
            raise InvalidInput(f"expected a JSON object, got {show(value)}")
        return value

    def _check_size(self, size: int) -> None:
        limit = self.spec.max_event_bytes
        if size > limit:
            raise InvalidInput(f"event is {size} bytes, over the {limit}-byte limit")

    # ---- validate ------------------------------------------------------------

    def validate(self, payload: dict[str, Any]) -> Record:
        """Ids, timestamp and every declared field, typed and normalized; extra keys ignored."""
        return self._validator.validate(payload)

    # ---- clean ---------------------------------------------------------------

    def clean(self, record: Record, *, learn: bool = True) -> Record:
        """Impute missing values, cap outliers, pseudonymize personal fields.

        ``learn`` updates the running statistics with the values seen (the
        ingestion does; a read-only caller such as a what-if query does not).
        """
        values = dict(record.values)
        imputed: list[str] = []
        capped: list[str] = []
        stats = self._stats
        for name, spec, cap, integer, pseudonymized in self._cleaning:
            value = values[name]
            if value is None:
                value = self._impute(name, spec, record.event_id)
                if value is None:
                    continue  # stays missing: nothing to round, learn or pseudonymize
                imputed.append(name)
                fresh = False  # an imputed value is not learned
            else:
                fresh = True
                if cap is not None and isinstance(value, float):
                    clipped = clip(value, cap)
                    if clipped != value:
                        capped.append(name)
                        value = clipped
            if integer and isinstance(value, float) and math.isfinite(value):
                value = float(round(value))
            if fresh and learn:
                statistic = stats.get(name)
                if statistic is not None:
                    statistic.update(value)
            if pseudonymized and value != "other":
                value = pseudonymize(str(value), self.salt)
            values[name] = value
        entity_id = record.entity_id
        if self._pseudonymize_entity:
            entity_id = pseudonymize(entity_id, self.salt)
        if learn:
            self.rows += 1
        return Record(
            record.event_id,
            entity_id,
            record.timestamp,
            values,
            tuple(imputed),
            tuple(capped),
            cleaned=True,
        )

    def learn(self, values: dict[str, Any]) -> None:
        """What ``clean(record, learn=True)`` learns from a record that has every field:
        each field's statistic updated with its cleaned value (``values``, as
        :meth:`CompiledPreparer.read <services.common.prep.compiled.CompiledPreparer.read>`
        gives them), in the fields' order, and one row more.
        """
        for name, statistic in self._stats.items():
            statistic.update(values[name])
        self.rows += 1

    def _impute(self, name: str, spec: FieldSpec, event_id: str) -> Any:
        if spec.impute == "reject":
            if spec.required:
                raise InvalidInput(
                    f"missing required field {name!r} ({describe(spec)}, no imputation)",
                    event_id=event_id,
                )
            return spec.fill  # optional: its fill, or None (the transforms' neutral value)
        if spec.impute == "constant":
            if spec.type == "category":
                return self._validator.category(name, spec, spec.fill)
            return _typed_fill(spec)
        estimate = self._stats[name].value()
        if estimate is not None:
            return estimate
        fallback = _typed_fill(spec) if spec.fill is not None else _neutral(spec)
        if fallback is None:
            raise InvalidInput(
                f"field {name!r} is missing and cannot be imputed yet: no values seen "
                f"for its {spec.impute} and no fill set",
                event_id=event_id,
            )
        return fallback

    # ---- featurize -------------------------------------------------------------

    def featurize(self, record: Record) -> dict[str, float]:
        """The spec's features, named as ``spec.feature_names()``, all finite floats."""
        if not record.cleaned:
            record = self.clean(record, learn=False)
        values = record.values
        if self.spec.timestamp_field not in values:
            values = {**values, self.spec.timestamp_field: record.timestamp}
        outputs: list[float] = []
        for compiled in self._compiled:
            outputs.extend(compiled(values))
        features = dict(zip(self.feature_names, outputs, strict=True))
        if all(map(math.isfinite, outputs)):
            return features
        for feature_name, value in features.items():
            if not math.isfinite(value):
                raise InvalidInput(
                    f"feature {feature_name!r} is {value} (an input value is too large "
                    f"for its transform); check the fields it is computed from",
                    event_id=record.event_id,
                )
        return features

    # ---- all together ----------------------------------------------------------

    def prepare(self, raw: bytes | str | dict[str, Any], *, learn: bool = True) -> FeatureRow:
        """A raw message or an already decoded event, to a feature row."""
        if isinstance(raw, dict):
            self._check_encoded_size(raw)
            payload = raw
        else:
            payload = self.parse(raw)
        record = self.clean(self._validator.validate(payload), learn=learn)
        features = self.featurize(record)
        return FeatureRow(
            event_id=feature_row_id(self.spec.name, record.event_id),
            usecase=self.spec.name,
            source_event_id=record.event_id,
            entity_id=record.entity_id,
            event_timestamp=record.timestamp,
            features=dict(features),
        )

    def features(self, payload: dict[str, Any], *, learn: bool = True) -> dict[str, float]:
        """``prepare(payload, learn=learn).features`` without the feature row around them.

        The same checks and reasons, the same floats; for a caller that scores the
        features and has no use for the row's ids (the inference service).
        """
        self._check_encoded_size(payload)
        return self.featurize(self.clean(self._validator.validate(payload), learn=learn))

    def _check_encoded_size(self, payload: dict[str, Any]) -> None:
        """The size check of ``parse`` on a decoded event: its ``json.dumps`` length."""
        if _fast_dumps is not None:
            try:
                compact = len(_fast_dumps(payload))
            except Exception:  # a value msgspec cannot write: json decides below
                compact = None
            if compact is not None and compact * _SIZE_BOUND <= self.spec.max_event_bytes:
                return
        try:
            size = len(_SIZE_ENCODER.encode(payload).encode())
        except (TypeError, ValueError, RecursionError) as exc:
            raise InvalidInput(f"event cannot be encoded as JSON: {exc}") from None
        self._check_size(size)

    # ---- state -----------------------------------------------------------------

    def state(self) -> dict[str, Any]:
        """The running statistics as plain JSON, for a checkpoint."""
        return {
            "version": STATE_VERSION,
            "usecase": self.spec.name,
            "rows": self.rows,
            "fields": {
                name: {"impute": self.spec.fields[name].impute, **stat.state()}
                for name, stat in self._stats.items()
            },
        }

    def _restore(self, state: dict[str, Any]) -> None:
        try:
            if state.get("version") != STATE_VERSION:
                raise ValueError(f"state version {state.get('version')!r}, not {STATE_VERSION}")
            if state.get("usecase") != self.spec.name:
                raise ValueError(f"state of use case {state.get('usecase')!r}")
            self.rows = int(state["rows"])
            for name, saved in state["fields"].items():
                # A field whose imputation changed since the checkpoint starts afresh.
                if name in self._stats and saved.get("impute") == self.spec.fields[name].impute:
                    self._stats[name] = restore_statistic(saved["impute"], saved)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise UseCaseError(f"{self.spec.name}: cannot restore preparer state: {exc}") from exc


def feature_row_id(usecase: str, source_event_id: str) -> str:
    """A stable id for the feature row of one raw event, so a replay writes the same row:
    ``uuid.uuid5`` of the use case and the event id, as hex digits.

    >>> feature_row_id("credit", "e1") == uuid.uuid5(_ROW_ID_NAMESPACE, "credit\\x00e1").hex
    True
    """
    # uuid5's digits without the UUID object: the namespace's sha1 state copied, not
    # hashed again, and the version and variant bits set on the first 16 bytes as one
    # integer (1.4 against 2.8 us a row with a bytearray)
    digest = _ROW_ID_SHA1.copy()
    digest.update(f"{usecase}\x00{source_event_id}".encode())
    number = int.from_bytes(digest.digest()[:16]) & _ROW_ID_KEEP | _ROW_ID_SET
    return format(number, "032x")


def _typed_fill(spec: FieldSpec) -> Any:
    """The ``fill`` value in the field's type (validated like an event value)."""
    fill = spec.fill
    if spec.type in ("float", "int") and not isinstance(fill, bool):
        return float(fill) if isinstance(fill, int | float) else parse_number(fill)
    if spec.type == "bool":
        return parse_bool(fill)
    return fill


def _neutral(spec: FieldSpec) -> Any:
    """A value to impute before any statistic exists: mid-range, false, or the first category."""
    if spec.type in ("float", "int"):
        if spec.min is not None and spec.max is not None:
            return (spec.min + spec.max) / 2
        return spec.min if spec.min is not None else (spec.max if spec.max is not None else 0.0)
    if spec.type == "bool":
        return False
    if spec.type == "category" and spec.values:
        return spec.values[0]
    return None

"""One event's features the way ``Preparer.features(payload, learn=False)`` gives them, faster.

:class:`CompiledPreparer` is worked out once for a :class:`~services.common.prep.Preparer`
(one set of statistics) and answers the common case of a serving request on its own:
every field present, of a plain JSON type and within its rules. It reads each field
as the validator does (numbers with the validator's own fast test, other types by the
validator itself), cleans it as ``clean`` does (caps, integer rounding), and runs the
preparer's own compiled transforms, without the record, the copies and the passes in
between. The numbers are the preparer's: the same operations on the same values.

Anything else — a missing or null field (imputed), a value the rules refuse, a
pseudonymized field, an id that is not plain text, a payload near the size limit, a
feature that is not finite — is handed to ``Preparer.features`` itself, which gives
its exact answer or its exact reason. The preparer is read-only here (``learn=False``
throughout): its statistics do not change under a compiled copy.

Ingestion reads its events with :meth:`CompiledPreparer.read`: the ids, time,
cleaned values and feature values of the common case, or None for the preparer's
exact path. Such an event's values do not depend on the statistics (none is
imputed), so it is read before anything is learned, and the partition's preparer
learns them afterwards (``Preparer.learn``, the updates of ``clean(learn=True)``);
an event handed to the preparer has learned nothing yet.

>>> from schemas.usecase import UseCase
>>> from services.common.prep import Preparer
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
>>> compiled = CompiledPreparer(preparer)
>>> event = {"event_id": "e1", "entity_id": "c1", "timestamp": "2026-01-01T00:00:00Z",
...          "age": 50, "plan": " Premium"}
>>> compiled.features(event) == preparer.features(event, learn=False)
True
>>> compiled.features({**event, "age": "old"})
Traceback (most recent call last):
...
services.common.errors.InvalidInput: field 'age': expected an integer in [18, 100], got 'old'
>>> read = compiled.read(event)
>>> read.event_id, read.values["age"], read.outputs
('e1', 50.0, [1.0, 0.0, 1.0, 0.0])
>>> preparer.learn(read.values)
>>> preparer.state()["rows"], preparer.state()["fields"]["age"]["values"]
(1, [50.0])
>>> compiled.read({**event, "age": None}) is None  # imputed: the preparer's
True
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import msgspec

from schemas.usecase import FieldSpec
from services.common.prep.preparer import Preparer
from services.common.prep.validation import unicode_text
from services.common.prep.values import MAX_TEXT, ValueProblem, parse_timestamp, remembered

_ENCODE = msgspec.json.Encoder().encode
_SIZE_BOUND = 6  # the preparer's: json.dumps writes at most 6 bytes for each of msgspec's
_STAMP_BYTES = 64  # more than ',"<key>":"<isoformat with microseconds and offset>"' adds
_REFER = object()  # this value is not the common case: the preparer decides
Reader = Callable[[Any], Any]
ValuesOf = Callable[[Callable[[str], Any], datetime], tuple[dict[str, Any], list[float]] | None]


@dataclass(slots=True)
class Prepared:
    """One event as the compiled path read it: its ids and time as ``validate`` gives
    them, ``values`` its fields as ``clean`` gives them (and its time, under the
    timestamp field), ``outputs`` the values of ``featurize``'s features, in the order
    of ``feature_names`` (a dict of 44 features is about 5 us to make, and ingestion
    only encodes them)."""

    event_id: str
    entity_id: str
    timestamp: datetime
    values: dict[str, Any]
    outputs: list[float]


class CompiledPreparer:
    """``preparer.features(payload, learn=False)``, the common case compiled; see the module."""

    def __init__(self, preparer: Preparer) -> None:
        self.preparer = preparer
        spec = preparer.spec
        self.spec = spec
        self._names = preparer.feature_names
        self._transforms = preparer._compiled  # the preparer's own compiled transforms
        validator = preparer._validator
        self._readers: list[tuple[str, Reader]] = [
            (name, _reader(name, field, validator)) for name, field in spec.fields.items()
        ]
        self._values_of = _straight_reader(spec, validator, self._readers, self._transforms)
        key = spec.fields.get(spec.entity_key)
        self.enabled = (
            spec.timestamp_field not in spec.fields
            and not any(field.pseudonymize for field in spec.fields.values())
            and not (key is not None and key.pseudonymize)
        )

    def features(self, payload: dict[str, Any], moment: datetime | None = None) -> dict[str, float]:
        """The features of ``payload``; ``moment`` is its time when it carries none.

        Without a time and without ``moment``, the preparer refuses the payload.
        Raises :class:`~services.common.errors.InvalidInput` as the preparer does.
        """
        found = self._common(payload, moment) if self.enabled else None
        if found is not None:
            return found
        if moment is not None and payload.get(self.spec.timestamp_field) is None:
            payload = {**payload, self.spec.timestamp_field: moment.isoformat()}
        return self.preparer.features(payload, learn=False)

    def read(self, payload: dict[str, Any]) -> Prepared | None:
        """``payload``'s ids, time, cleaned values and features, as ``validate``, ``clean``
        and ``featurize`` give them (and ``clean(learn=True)`` would: the values of an
        event that has every field do not depend on the statistics), or None where the
        preparer must decide. Nothing is learned; :meth:`Preparer.learn` learns ``values``.

        No size check: ingestion's ``parse`` checked the raw bytes' size already.
        """
        found = self._read(payload, None) if self.enabled else None
        return None if found is None else Prepared(*found)

    def _common(self, payload: dict[str, Any], moment: datetime | None) -> dict[str, float] | None:
        spec = self.spec
        try:
            compact = len(_ENCODE(payload))
        except Exception:  # a value msgspec cannot write: the preparer decides
            return None
        if payload.get(spec.timestamp_field) is None:
            if moment is None:
                return None
            compact += len(spec.timestamp_field) + _STAMP_BYTES
        if compact * _SIZE_BOUND > spec.max_event_bytes:
            return None
        found = self._read(payload, moment)
        return None if found is None else dict(zip(self._names, found[4], strict=True))

    def _read(
        self, payload: dict[str, Any], moment: datetime | None
    ) -> tuple[str, str, datetime, dict[str, Any], list[float]] | None:
        """:class:`Prepared`'s fields for the common case of ``payload``, its size checked;
        ``moment`` stands in for a time it lacks."""
        spec = self.spec
        stamp_field = spec.timestamp_field
        event_id = _plain_id(payload.get("event_id"))
        entity_id = _plain_id(payload.get(spec.entity_key))
        if event_id is None or entity_id is None:
            return None
        raw_time = payload.get(stamp_field)
        if raw_time is None:
            if moment is None:
                return None
            timestamp = moment
        else:
            try:
                timestamp = parse_timestamp(raw_time)
            except ValueProblem:
                return None
        found = self._values_of(payload.get, timestamp)
        if found is None:
            return None
        values, outputs = found
        # The sum is finite only if every output is (0.6 against 1.1 us for all(isfinite));
        # a sum that overflows goes to the preparer, as a feature that is not finite does.
        if not math.isfinite(sum(outputs)):
            return None
        return event_id, entity_id, timestamp, values, outputs


def _plain_id(value: Any) -> str | None:
    """An id the validator keeps, as it keeps it: text of 1 to MAX_TEXT characters once
    stripped (an integer id, or none, is the validator's to read)."""
    if type(value) is not str:
        return None
    text = value.strip()
    return text if 0 < len(text) <= MAX_TEXT and unicode_text(text) else None


def _reader(name: str, field: FieldSpec, validator: Any) -> Reader:
    """A field's validated and cleaned value from its raw one, or ``_REFER``."""
    if field.type in ("float", "int") and not validator._aliases[name]:
        return _numeric_reader(field)
    cap, integer = field.cap, field.type == "int"
    read_value = validator._field_value

    def read(raw: Any) -> Any:
        if raw is None:
            return _REFER  # imputed: the preparer's
        try:
            value = read_value(name, field, raw)
        except ValueProblem:
            return _REFER
        if value is None:
            return _REFER
        if cap is not None and isinstance(value, float):
            value = min(max(value, cap[0]), cap[1])
        if integer and isinstance(value, float) and math.isfinite(value):
            value = float(round(value))
        return value

    # A category's or a boolean's value is its raw value's alone (0.0 and -0.0 alike)
    return remembered(read) if field.type in ("category", "bool") else read


def _straight_reader(
    spec: Any, validator: Any, readers: list[tuple[str, Reader]], transforms: list[Any]
) -> ValuesOf:
    """The field loop of :meth:`CompiledPreparer._read` as one function written for the spec:
    ``(payload.get, timestamp)`` to the cleaned values (the time last, under the timestamp
    field) and the features' outputs, or None where a field is the preparer's.

    Straight-line source made once a preparer: each plain number field's test and
    cleaning is :func:`_numeric_reader`'s, spelled out with the field's own bounds (no
    call, no loop); any other field calls its reader; the transforms are called in order.
    Its constants are the namespace's, never written into the source.
    """
    namespace: dict[str, Any] = {"REFER": _REFER, "isfinite": math.isfinite}
    lines = ["def values_of(get, timestamp):"]
    names = []
    for index, (name, read) in enumerate(readers):
        field = spec.fields[name]
        value = f"v{index}"
        namespace[f"k{index}"] = name
        names.append(f"k{index}: {value}")
        if field.type not in ("float", "int") or validator._aliases[name]:
            namespace[f"r{index}"] = read
            lines += [f"    {value} = r{index}(get(k{index}))", f"    if {value} is REFER:",
                      "        return None"]  # fmt: skip
            continue
        integer = field.type == "int"
        lines += [
            f"    n = get(k{index})",
            "    kind = type(n)",
            "    if kind is int:",
            "        try:",
            "            n = float(n)",
            "        except OverflowError:",
            "            return None",
            "    elif kind is not float:",
            "        return None",
            "    if not isfinite(n)" + (" or not n.is_integer():" if integer else ":"),
            "        return None",
        ]
        if field.cap is not None:
            namespace[f"low_cap{index}"], namespace[f"high_cap{index}"] = field.cap
            lines += [f"    if low_cap{index} > n:", f"        n = low_cap{index}",
                      f"    if high_cap{index} < n:", f"        n = high_cap{index}"]  # fmt: skip
        for bound, test, label in ((field.min, ">=", "low"), (field.max, "<=", "high")):
            if bound is not None:
                namespace[f"{label}{index}"] = bound
                lines += [f"    if not n {test} {label}{index}:", "        return None"]
        lines.append(f"    {value} = float(round(n))" if integer else f"    {value} = n")
    namespace["stamp"] = spec.timestamp_field
    lines.append("    values = {" + ", ".join([*names, "stamp: timestamp"]) + "}")
    for index, transform in enumerate(transforms):
        namespace[f"t{index}"] = transform
    outputs = ", ".join(f"*t{index}(values)" for index in range(len(transforms)))
    lines.append(f"    return values, [{outputs}]")
    exec("\n".join(lines), namespace)  # the source holds no value of the spec, only names
    values_of: ValuesOf = namespace["values_of"]
    return values_of


def _numeric_reader(field: FieldSpec) -> Reader:
    """The validator's fast test of a JSON number, then ``clean``'s cap and rounding."""
    integer = field.type == "int"
    cap, low, high = field.cap, field.min, field.max

    def read(raw: Any) -> Any:
        kind = type(raw)
        if kind is not float and kind is not int:
            return _REFER
        try:
            number = float(raw)
        except OverflowError:
            return _REFER
        if not math.isfinite(number) or (integer and not number.is_integer()):
            return _REFER
        checked = number
        if cap is not None:  # min(max(number, low cap), high cap), spelled out
            if cap[0] > checked:
                checked = cap[0]
            if cap[1] < checked:
                checked = cap[1]
        if (low is not None and not checked >= low) or (high is not None and not checked <= high):
            return _REFER
        if integer:
            return float(round(checked))
        return checked

    return read

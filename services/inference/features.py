"""The features a request is scored on: its own fields, or the entity's online row.

The rule, per request item:

1. When ``features`` carries every required field of the use case (a value
   that is not null), those fields are validated, cleaned and featurized by
   the shared :class:`~services.common.prep.Preparer` (``learn=False``: serving
   never changes the cleaning statistics), exactly as ingestion does: a
   missing optional field is imputed from ingestion's running statistics,
   the latest snapshot it published on ``<uc>.stats`` (see
   :mod:`services.inference.stats`; before any, the spec's fills, as a fresh
   ingestion would). A value the preparer rejects is a 422 with its reason,
   naming the field.
2. Otherwise the entity's latest row in the Feast online store is used as it
   is (the ingestion already featurized it); request fields are then ignored.
3. With neither, the answer is a 422 naming the required fields missing.

Each answer says which source it used (``feature_source``).

Two readers of the online store give the same values: ``sdk``
(``FeatureStore.get_online_features``) and ``direct`` (the provider's
``online_read`` with Feast's own entity-key serialization and value
decoding, skipping the SDK's request planning; several times faster, see
the benchmark notes in the report).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from schemas.usecase import UseCase
from services.common.errors import InvalidInput
from services.common.prep.compiled import CompiledPreparer
from services.common.prep.preparer import Preparer
from services.common.prep.validation import Record
from services.common.prep.values import pseudonymize
from services.inference.errors import FeatureStoreUnavailable, InvalidFeatures
from services.inference.ids import new_id

FeatureSource = Literal["request", "online"]
_QUOTED = re.compile(r"'([^']+)'")


@dataclass(frozen=True)
class Item:
    """One request item, as the API validated it."""

    entity_id: str
    event_id: str | None
    fields: Mapping[str, Any]


@dataclass(frozen=True)
class Resolved:
    """The features an item is scored on and where they came from."""

    entity_id: str
    event_id: str
    features: dict[str, Any]
    source: FeatureSource


def required_fields(spec: UseCase) -> list[str]:
    """Fields a request must carry to be featurized on its own.

    >>> from schemas.usecase import UseCase
    >>> spec = UseCase.model_validate({"name": "t", "task": "regression",
    ...     "fields": {"a": {"type": "float"}, "b": {"type": "float", "required": False}},
    ...     "features": [{"kind": "passthrough", "field": "a"}]})
    >>> required_fields(spec)
    ['a']
    """
    return [name for name, field in spec.fields.items() if field.required]


def missing_fields(spec: UseCase, fields: Mapping[str, Any]) -> list[str]:
    """Required fields absent (or null) in ``fields``."""
    return [name for name in required_fields(spec) if fields.get(name) is None]


def lacks_any(required: Sequence[str], fields: Mapping[str, Any]) -> bool:
    """Whether a field of ``required`` is absent (or null) in ``fields``.

    ``None in`` compares by identity first, and no JSON value equals None.

    >>> lacks_any(["a", "b"], {"a": 1.0, "b": 0}), lacks_any(["a", "b"], {"a": 1.0, "b": None})
    (False, True)
    """
    return None in map(fields.get, required)


def field_of(reason: str) -> str | None:
    """The field a preparer's reason names (its first quoted name).

    >>> field_of("field 'age': expected an integer in [18, 100], got 'old'")
    'age'
    >>> field_of("event is 70000 bytes, over the 65536-byte limit") is None
    True
    """
    match = _QUOTED.search(reason)
    return match.group(1) if match else None


def scalar(value: Any) -> Any:
    """A scalar Feast ``Value`` proto as Python (None when unset or absent).

    The views driftline defines hold scalars only (Float64 features, a String
    event id), so the proto's one set field is the value; Feast's general
    ``feast_value_type_to_python_type`` gives the same for scalars, slower.

    >>> from feast.protos.feast.types.Value_pb2 import Value
    >>> scalar(Value(double_val=1.5)), scalar(Value()), scalar(None)
    (1.5, None, None)
    """
    if value is None:
        return None
    kind = value.WhichOneof("val")
    return None if kind is None or kind == "null_val" else getattr(value, kind)


class OnlineReader:
    """Reads entities' latest rows from the Feast online store, by either reader."""

    def __init__(self, store: Any, method: Literal["direct", "sdk"] = "direct") -> None:
        self.store = store
        self.method = method
        self._views: dict[str, Any] = {}
        self._names: dict[str, list[str]] = {}

    def read(self, spec: UseCase, entity_ids: Sequence[str]) -> list[dict[str, Any] | None]:
        """Each entity's features by name, or None when the entity has no row."""
        if not entity_ids:
            return []
        if self.method == "sdk":
            return self._read_sdk(spec, entity_ids)
        return self._read_direct(spec, entity_ids)

    def _read_sdk(self, spec: UseCase, entity_ids: Sequence[str]) -> list[dict[str, Any] | None]:
        from services.common.featurestore import EVENT_ID, online_features

        rows: list[dict[str, Any] | None] = []
        for row in online_features(self.store, spec, entity_ids):
            if row.get(EVENT_ID) is None:
                rows.append(None)
            else:
                rows.append({name: row.get(name) for name in spec.feature_names()})
        return rows

    def _view(self, spec: UseCase) -> Any:
        from services.common.featurestore import view_name

        view = self._views.get(spec.name)
        if view is None:
            view = self.store.get_feature_view(view_name(spec.name))
            self._views[spec.name] = view
        return view

    def _read_direct(self, spec: UseCase, entity_ids: Sequence[str]) -> list[dict[str, Any] | None]:
        from feast.protos.feast.types.EntityKey_pb2 import EntityKey
        from feast.protos.feast.types.Value_pb2 import Value

        from services.common.featurestore import ENTITY_KEY

        names = self._names.get(spec.name)
        if names is None:  # worked out once a use case (the spec derives them afresh)
            names = self._names[spec.name] = spec.feature_names()
        from services.common import onlinestore
        from services.common.featurestore import view_name

        config = self.store.config
        if isinstance(config.online_store, onlinestore.SqliteRowsOnlineStoreConfig):
            # the embedded one-row-per-entity store: its own reader, no Feast protos
            return onlinestore.read_rows(config, view_name(spec.name), list(entity_ids), names)
        keys = [
            EntityKey(join_keys=[ENTITY_KEY], entity_values=[Value(string_val=entity_id)])
            for entity_id in entity_ids
        ]
        provider = self.store._get_provider()  # the SDK's own store binding, no public getter
        answers = provider.online_read(self.store.config, self._view(spec), keys, names)
        rows: list[dict[str, Any] | None] = []
        for _, values in answers:
            if not values:
                rows.append(None)
                continue
            rows.append({name: scalar(values.get(name)) for name in names})
        return rows


class FeatureResolver:
    """Applies the module's rule to the items of one request."""

    def __init__(self, spec: UseCase, reader: OnlineReader | None, salt: str = "") -> None:
        self.spec = spec
        self.reader = reader
        self.salt = salt
        self.preparer = Preparer(spec, salt=salt)
        self._reference: tuple[Preparer, dict[str, float]] | None = None
        self._compiled = CompiledPreparer(self.preparer)  # follows the preparer: _compiled_for
        key_field = spec.fields.get(spec.entity_key)
        self.pseudonymized_key = key_field is not None and key_field.pseudonymize
        self.required = required_fields(spec)  # worked out once: every request asks

    def needs_store(self, item: Item) -> bool:
        """Whether ``item`` is scored on the online store's row (it lacks a required field)."""
        return lacks_any(self.required, item.fields)

    def lookups(self, items: Sequence[Item]) -> list[int]:
        """The indices of the items scored on the online store's row (:meth:`needs_store`)."""
        required = self.required
        return [i for i, item in enumerate(items) if lacks_any(required, item.fields)]

    def use_statistics(self, state: dict[str, Any]) -> None:
        """Impute from ingestion's statistics ``state`` (a ``Preparer.state()``) from now on.

        A new preparer replaces the old one whole, so a request being resolved
        meanwhile (in a worker thread) finishes with the statistics it began with.
        Raises :class:`~schemas.usecase.UseCaseError` for a state of another use
        case or version; the current statistics are kept then.
        """
        self.preparer = Preparer(self.spec, state, salt=self.salt)

    def reference_row(self) -> dict[str, float]:
        """The features of the use case's typical record: every field at its imputed value.

        The values ingestion imputes a missing field with (its running median
        or most frequent value, a constant fill), featurized; a river model's
        explanations start from this row. All zeros when a field cannot be
        imputed (a required field without imputation).
        """
        preparer = self.preparer
        if self._reference is not None and self._reference[0] is preparer:
            return self._reference[1]
        record = Record(
            "reference", "reference", datetime.now(UTC), dict.fromkeys(self.spec.fields)
        )
        try:
            features = preparer.featurize(record)
        except InvalidInput:
            features = dict.fromkeys(self.spec.feature_names(), 0.0)
        self._reference = (preparer, features)
        return features

    def _compiled_for(self, preparer: Preparer) -> CompiledPreparer:
        """The compiled single-event path of ``preparer`` (worked out once a preparer)."""
        compiled = self._compiled
        if compiled.preparer is not preparer:
            compiled = self._compiled = CompiledPreparer(preparer)
        return compiled

    def resolve(self, items: Sequence[Item], lookups: list[int] | None = None) -> list[Resolved]:
        """Features for every item; raises :class:`InvalidFeatures` for the first bad one.

        ``lookups``: the items' :meth:`lookups`, when the caller worked them out already.
        """
        preparer = self.preparer  # one set of statistics for the whole request
        compiled = self._compiled_for(preparer)
        if lookups is None:
            lookups = self.lookups(items)
        resolved: list[Resolved | None] = [None] * len(items)
        stored = set(lookups)
        for index, item in enumerate(items):
            if index not in stored:
                resolved[index] = self._from_request(compiled, index, item)
        if lookups:
            rows = self._online([items[i].entity_id for i in lookups])
            for index, row in zip(lookups, rows, strict=True):
                item = items[index]
                if row is None:
                    missing = missing_fields(self.spec, item.fields)
                    raise InvalidFeatures(
                        f"entity {item.entity_id!r} has no online features and the request "
                        f"lacks required fields {missing}",
                        field=missing[0],
                        index=index,
                    )
                event_id = item.event_id or new_id()
                resolved[index] = Resolved(item.entity_id, event_id, row, "online")
        return [r for r in resolved if r is not None]

    def _from_request(self, compiled: CompiledPreparer, index: int, item: Item) -> Resolved:
        event_id = item.event_id or new_id()
        payload = dict(item.fields)
        payload["event_id"] = event_id
        payload[self.spec.entity_key] = item.entity_id
        # Without a time of its own the item is timed now (as text for the preparer).
        moment = datetime.now(UTC) if payload.get(self.spec.timestamp_field) is None else None
        try:
            features = compiled.features(payload, moment)
        except InvalidInput as exc:
            raise InvalidFeatures(exc.reason, field=field_of(exc.reason), index=index) from exc
        return Resolved(item.entity_id, event_id, features, "request")

    def _online(self, entity_ids: list[str]) -> list[dict[str, Any] | None]:
        if self.reader is None:
            return [None] * len(entity_ids)
        if self.pseudonymized_key:
            entity_ids = [pseudonymize(e, self.salt) for e in entity_ids]
        try:
            return self.reader.read(self.spec, entity_ids)
        except Exception as exc:  # Redis down, SQLite locked: the store, not the request
            raise FeatureStoreUnavailable(
                f"online feature store unavailable for {self.spec.name}: "
                f"{type(exc).__name__}: {exc}"
            ) from exc

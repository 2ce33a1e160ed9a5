"""Bad input against the inference API: generated requests never get a 5xx.

A real inference process (uvicorn, the session broker, Feast and MLflow
under a temporary home) serves a credit use case with a champion.
Hypothesis sends every operation of its OpenAPI document junk and
near-valid bodies, unknown use cases, lists, wrong types and broken JSON;
every answer must be below 500, JSON, and the process must log no
traceback. ``test_schemathesis`` runs schemathesis on the same server when
it is installed.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.common.broker import EmbeddedBroker
from tests.inference.conftest import raw_events, request_fields
from tests.reliability import tally
from tests.reliability.helpers import served_inference
from tests.stack import ROOT, Stack, usecase_copy

pytestmark = [pytest.mark.integration, pytest.mark.slow]

API_KEY = "fuzz-key-" + uuid.uuid4().hex[:8]


class Server:
    def __init__(self, base: str, usecase: str, stack: Stack) -> None:
        self.base = base
        self.usecase = usecase
        self.stack = stack
        self.client = httpx.Client(base_url=base, timeout=30, headers={"X-API-Key": API_KEY})


@pytest.fixture(scope="module")
def server(broker: EmbeddedBroker, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    root = tmp_path_factory.mktemp("fuzz")
    usecase = "f" + uuid.uuid4().hex[:10]
    usecase_copy(ROOT / "usecases" / "credit.yaml", root / "usecases", usecase)
    (root / "home").mkdir()
    stack = Stack(broker.bootstrap, root / "home", root / "usecases", root)
    try:
        base, _ = served_inference(stack, usecase, DRIFTLINE_API_KEY=API_KEY)
        running = Server(base, usecase, stack)
        yield running
        running.client.close()
        assert "Traceback" not in stack.log("inference"), stack.log("inference")[-4000:]
    finally:
        stack.stop_all()


scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**20), max_value=10**20)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20)
    | st.sampled_from(["", "NaN", "Infinity", "1e400", "-1", "gold", "x" * 300])
)
json_values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=10,
)
EVENT = request_fields(raw_events(1, seed=5)[0][0])


@st.composite
def predict_items(draw: st.DrawFn) -> dict[str, Any]:
    """A predict item: most fields right, a few replaced by junk or removed."""
    features = dict(EVENT)
    for name in draw(st.lists(st.sampled_from(sorted(EVENT)), max_size=4, unique=True)):
        if draw(st.booleans()):
            features[name] = draw(json_values)
        else:
            del features[name]
    item: dict[str, Any] = {
        "entity_id": draw(st.text(min_size=1, max_size=12) | json_values),
        "features": features if draw(st.integers(0, 9)) else draw(json_values),
    }
    if draw(st.booleans()):
        item["event_id"] = draw(st.text(max_size=12) | json_values)
    if not draw(st.integers(0, 9)):
        item[draw(st.text(max_size=6))] = draw(json_values)
    return item


feedback_items = st.fixed_dictionaries(
    {
        "event_id": st.text(max_size=12) | json_values,
        "label": json_values | st.sampled_from([0, 1]),
    },
    optional={"timestamp": st.text(max_size=30) | json_values | st.just("2026-01-01T00:00:00Z")},
)


def bodies(items: st.SearchStrategy[Any]) -> st.SearchStrategy[bytes]:
    documents = items | st.lists(items, max_size=5) | json_values
    encoded = documents.map(lambda d: json.dumps(d).encode())
    broken = st.binary(max_size=200) | encoded.map(lambda b: b[: max(1, len(b) // 2)])
    return encoded | broken


FUZZ = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)


def check(response: httpx.Response) -> None:
    tally.add("bad_inputs")
    assert response.status_code < 500, (response.status_code, response.text[:500])
    routed = "%2F" not in str(response.request.url).upper()  # an encoded '/' in the use case
    if routed and (response.status_code != 200 or response.request.url.path.startswith("/v1/")):
        response.json()  # every answer of the API's own routes, errors included, is JSON


def names(server: Server) -> st.SearchStrategy[str]:
    """The served use case, or any text (percent-encoded into the path)."""
    return st.sampled_from([server.usecase]) | st.text(max_size=10).map(
        lambda text: quote(text, safe="")
    )


@FUZZ
@given(data=st.data())
def test_predict_never_answers_5xx(server: Server, data: st.DataObject) -> None:
    usecase = data.draw(names(server))
    body = data.draw(bodies(predict_items()))
    headers = {"content-type": "application/json"}
    check(server.client.post(f"/v1/predict/{usecase}", content=body, headers=headers))


@FUZZ
@given(data=st.data())
def test_feedback_and_reads_never_answer_5xx(server: Server, data: st.DataObject) -> None:
    usecase = data.draw(names(server))
    body = data.draw(bodies(feedback_items))
    check(server.client.post(f"/v1/feedback/{usecase}", content=body))
    check(server.client.get(f"/v1/models/{usecase}"))


def test_a_valid_request_is_answered(server: Server) -> None:
    """The fuzzing reaches the model: the same path answers a good request with 200."""
    answer = server.client.post(
        f"/v1/predict/{server.usecase}", json={"entity_id": "c1", "features": EVENT}
    )
    assert answer.status_code == 200, answer.text
    assert answer.json()["prediction"] in (0, 1)


def test_schemathesis_finds_no_server_error(server: Server) -> None:
    schemathesis = pytest.importorskip(
        "schemathesis",
        minversion="4",
        reason="schemathesis is not installed: add 'schemathesis>=4.32,<5' to the dev extra",
    )
    schema = schemathesis.openapi.from_url(f"{server.base}/openapi.json")
    failures: list[str] = []
    tried = 0
    for operation in schema.get_all_operations():
        api = operation.ok()

        @settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck))
        @given(case=api.as_strategy())
        def run(case: Any) -> None:
            nonlocal tried
            tried += 1
            if "usecase" in (case.path_parameters or {}) and tried % 2:
                case.path_parameters["usecase"] = server.usecase
            response = case.call(base_url=server.base, headers={"X-API-Key": API_KEY})
            if response.status_code >= 500:
                failures.append(f"{case.method} {case.formatted_path}: {response.status_code}")

        run()
    tally.add("bad_inputs", tried)
    assert tried > 0
    assert not failures, failures

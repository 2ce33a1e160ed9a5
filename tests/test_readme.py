"""The README stays true: its quickstart and its use-case example."""

from __future__ import annotations

import re
from pathlib import Path

from schemas.usecase import load_usecase

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()


def test_quickstart_is_exactly_make_demo_and_make_test() -> None:
    block = README.split("## Quickstart", 1)[1].split("```bash", 1)[1].split("```", 1)[0]
    commands = [line.split("#")[0].strip() for line in block.strip().splitlines()]
    assert commands == ["make demo", "make test"]


def test_the_use_case_example_is_a_valid_use_case(tmp_path: Path) -> None:
    match = re.search(r"```yaml\n# usecases/(\w+)\.yaml[^\n]*\n(.*?)```", README, re.S)
    assert match is not None
    path = tmp_path / f"{match.group(1)}.yaml"
    path.write_text(match.group(2))
    spec = load_usecase(path)
    assert spec.task == "classification"
    assert "plan_other" in spec.feature_names()


def test_ci_runs_make_test_and_nothing_else() -> None:
    script = (ROOT / ".ci" / "run").read_text()
    commands = [line for line in script.splitlines() if line and not line.startswith("#")]
    assert commands[-1] == "make test"

"""The project's layout promises: requirements in step, one folder per function, thin handlers."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).parents[2]


def _normalise(requirement: str) -> str:
    requirement = requirement.split("#", 1)[0].strip().lower()
    return re.sub(r"\s+", "", requirement.replace("_", "-"))


def test_layer_requirements_match_pyproject_dependencies():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    declared = sorted(_normalise(dep) for dep in project["dependencies"])
    lines = (ROOT / "layers" / "common" / "requirements.txt").read_text().splitlines()
    layer = sorted(_normalise(line) for line in lines if _normalise(line))
    assert layer == declared, "layers/common/requirements.txt drifted from [project].dependencies"


def test_dev_tools_stay_out_of_the_layer():
    lines = (ROOT / "layers" / "common" / "requirements.txt").read_text().lower()
    for tool in ("moto", "pytest", "cfn-lint", "aws-sam-cli", "werkzeug", "ruff"):
        assert tool not in lines


def test_every_function_folder_has_a_thin_handler_and_sample_events():
    functions = sorted(p for p in (ROOT / "functions").iterdir() if p.is_dir() and not p.name.startswith("_"))
    assert functions
    for folder in functions:
        handler = folder / "handler.py"
        assert handler.is_file(), f"{folder.name} has no handler.py"
        assert len(handler.read_text().splitlines()) <= 80, f"{folder.name}/handler.py is not thin wiring"
        assert list((ROOT / "events" / folder.name).glob("*.json")), f"events/{folder.name}/ has no sample"


def test_the_local_runtime_is_not_part_of_the_layer():
    layer = ROOT / "layers" / "common" / "python" / "insightmesh"
    for source in layer.rglob("*.py"):
        text = source.read_text()
        assert "insightmesh_local" not in text, f"{source} imports the local runtime"
        assert "from functions" not in text and "import functions" not in text


def test_ci_runs_the_readme_test_command():
    assert "make test" in (ROOT / ".ci" / "run").read_text()
    readme = (ROOT / "README.md").read_text()
    assert "make test" in readme and "make dev" in readme

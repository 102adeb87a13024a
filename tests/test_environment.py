"""pyproject.toml, environment.yml and binder/ name the same dependencies."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
# conda-forge names that differ from PyPI names
CONDA_TO_PYPI = {"pytorch": "torch", "python-kaleido": "kaleido"}
NOT_PACKAGES = {"python", "pip"}


def _name(requirement: str) -> str:
    return re.split(r"[<>=!~ \[;]", requirement.strip(), maxsplit=1)[0].lower().replace("_", "-")


def _spec(requirement: str) -> str:
    return requirement.strip()[len(_name(requirement)):].replace(" ", "")


def _pyproject() -> tuple[dict[str, str], dict[str, str]]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    runtime = {_name(r): _spec(r) for r in project["dependencies"]}
    dev = {_name(r): _spec(r) for r in project["optional-dependencies"]["dev"]}
    return runtime, dev


def _conda(path: Path) -> tuple[dict[str, str], list[str]]:
    env = yaml.safe_load(path.read_text())
    conda, pip = {}, []
    for dep in env["dependencies"]:
        if isinstance(dep, dict):
            pip.extend(dep.get("pip", []))
            continue
        name = _name(dep)
        if name not in NOT_PACKAGES:
            conda[CONDA_TO_PYPI.get(name, name)] = _spec(dep)
    for req in pip:
        if not req.startswith("-"):
            conda[_name(req)] = _spec(req)
    return conda, pip


def test_environment_yml_matches_pyproject() -> None:
    runtime, dev = _pyproject()
    conda, pip = _conda(ROOT / "environment.yml")
    assert conda == {**runtime, **dev}
    assert "-e ." in pip, "environment.yml must install bmlib itself"
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    assert "python=3.11" in env["dependencies"]


def test_binder_matches_pyproject() -> None:
    runtime, _ = _pyproject()
    conda, _ = _conda(ROOT / "binder" / "environment.yml")
    assert conda == runtime
    post = (ROOT / "binder" / "postBuild").read_text()
    assert "pip install --no-deps -e ." in post
    assert (ROOT / "binder" / "postBuild").stat().st_mode & 0o111, "postBuild must be executable"


def test_torch_pin_keeps_cpu_wheel() -> None:
    runtime, _ = _pyproject()
    assert runtime["torch"] == ">=2.3,<2.14"


@pytest.mark.parametrize("name", ["run", "test", "lab"])
def test_makefile_targets(name: str) -> None:
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(rf"^{name}:", makefile, re.M), f"Makefile lacks target {name}"


def test_ci_calls_readme_test_command() -> None:
    ci = (ROOT / ".ci" / "run").read_text()
    readme = (ROOT / "README.md").read_text()
    assert "make test" in ci
    assert "make test" in readme and "make run" in readme

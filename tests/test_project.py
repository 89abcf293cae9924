"""The project's own files agree with each other."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import yaml

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]


def requirement(spec: str) -> tuple[str, str]:
    """('numpy', '>=1.26') from 'numpy>=1.26'; names compared in PEP 503 normal form."""
    name, constraint = re.match(r"^\s*([A-Za-z0-9_.\-]+)\s*(.*)$", spec).groups()
    return re.sub(r"[-_.]+", "-", name).lower(), constraint.replace(" ", "")


def test_environment_yml_names_the_runtime_dependencies_of_pyproject():
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    runtime = {requirement(s) for s in pyproject["project"]["dependencies"]}
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    conda = {requirement(s) for s in env["dependencies"] if isinstance(s, str)}
    conda = {(n, c) for n, c in conda if n not in ("python", "pip")}
    assert conda == runtime
    pip = [item["pip"] for item in env["dependencies"] if isinstance(item, dict)]
    assert pip == [["-e .[book,test]"]]
    python = [s for s in env["dependencies"] if isinstance(s, str) and s.startswith("python")]
    assert python == [f"python{pyproject['project']['requires-python']}"]


def test_the_design_cards_top_level_is_there():
    for name in ("book", "refimpl", "tests", "environment.yml", "_config.yml", "README.md", "pyproject.toml",
                 "Makefile", ".ci/run"):
        assert (ROOT / name).exists(), name

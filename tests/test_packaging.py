"""refimpl as a user gets it: the sdist and the wheel built from the repository, the wheel
installed into a fresh environment, and the README's examples run there, outside the source
tree, with an unwritable home directory, an unwritable temporary directory and no compiler
on the PATH (refimpl writes nothing and compiles nothing on first use)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tarfile
import venv
import zipfile
from pathlib import Path

import pytest

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
BLOCKS = re.findall(r"```python\n(.*?)```", README, flags=re.S)
NEEDS = {"torch": "torch", "cupy": "a GPU", "dask": "dask and a cluster",
         "strategies": "hypothesis (refimpl[strategies])"}  # what a block may need beyond refimpl


def run(*command, **kwargs) -> subprocess.CompletedProcess:
    result = subprocess.run([str(c) for c in command], capture_output=True, text=True, timeout=900, **kwargs)
    assert result.returncode == 0, f"{command} failed:\n{result.stdout}\n{result.stderr}"
    return result


@pytest.fixture(scope="module")
def dist(tmp_path_factory) -> Path:
    """The sdist, and the wheel that `python -m build` makes from it (so the sdist is complete),
    built from a copy of the files a clone has: an editable install leaves refimpl.egg-info in
    the working tree, whose file list setuptools would silently add to the sdist."""
    source, out = tmp_path_factory.mktemp("source"), tmp_path_factory.mktemp("dist")
    files = run("git", "ls-files", "--cached", "--others", "--exclude-standard", "-z", cwd=ROOT).stdout
    for name in filter(None, files.split("\0")):
        if (ROOT / name).is_file():
            (source / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, source / name)
    run(sys.executable, "-m", "build", "--outdir", out, source)
    return out


@pytest.fixture(scope="module")
def env(dist, tmp_path_factory) -> Path:
    """A fresh virtual environment with the wheel installed (numpy and array-api-compat from
    the package index, as a user gets them)."""
    home = tmp_path_factory.mktemp("env")
    venv.create(home, with_pip=True)
    run(home / "bin" / "python", "-m", "pip", "install", "--quiet", next(dist.glob("*.whl")))
    return home


def version() -> str:
    return re.search(r'^__version__ = "(.*)"$', (ROOT / "refimpl" / "__init__.py").read_text(), re.M).group(1)


def test_the_sdist_carries_the_package_and_leaves_the_repository_out(dist):
    with tarfile.open(next(dist.glob("*.tar.gz"))) as sdist:
        names = {name.split("/", 1)[1] for name in sdist.getnames() if "/" in name}
    for needed in ("LICENSE", "README.md", "pyproject.toml", "refimpl/__init__.py", "refimpl/adam.py",
                   "refimpl/py.typed", "refimpl/vectors/adam.json", "refimpl/vectors/schema.json"):
        assert needed in names, needed
    assert not [n for n in names if n.split("/")[0] in ("tests", "book", "benchmarks", ".ci")]


def test_the_wheel_has_its_metadata_data_and_command(dist):
    with zipfile.ZipFile(next(dist.glob("*.whl"))) as wheel:
        names = set(wheel.namelist())
        info = next(n.split("/")[0] for n in names if n.endswith(".dist-info/METADATA"))
        metadata = wheel.read(f"{info}/METADATA").decode()
        entry_points = wheel.read(f"{info}/entry_points.txt").decode()
    assert {"refimpl/py.typed", "refimpl/vectors/adam.json", "refimpl/vectors/schema.json", f"{info}/licenses/LICENSE"} <= names
    assert not [n for n in names if n.startswith(("tests/", "book/", "benchmarks/"))]
    assert f"Version: {version()}" in metadata and "License-Expression: MIT" in metadata
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    for requirement in pyproject["dependencies"]:
        assert f"Requires-Dist: {requirement}" in metadata
    assert "refimpl = refimpl._cli:main" in entry_points


@pytest.fixture(scope="module")
def outside(env, tmp_path_factory):
    """Run Python code in the fresh environment, from an empty directory outside the repository,
    with HOME and TMPDIR unwritable and no compiler on the PATH."""
    cwd = tmp_path_factory.mktemp("elsewhere")
    locked = tmp_path_factory.mktemp("locked")
    locked.chmod(0o500)
    environment = {"PATH": str(env / "bin"), "HOME": str(locked / "home-that-does-not-exist"),
                   "TMPDIR": str(locked), "LANG": "C.UTF-8"}

    def python(*arguments):
        return run(env / "bin" / "python", *arguments, cwd=cwd, env=environment)
    yield python
    locked.chmod(0o700)


def test_the_command_and_the_module_report_the_version(outside, env):
    assert outside("-m", "refimpl", "--version").stdout.strip() == f"refimpl {version()}"
    assert run(env / "bin" / "refimpl", "--version").stdout.strip() == f"refimpl {version()}"


def test_the_shipped_golden_vectors_check_out_in_a_fresh_install(outside):
    assert outside("-m", "refimpl", "vectors", "check").stdout.startswith("OK: 4 file(s)")


@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_readme_example_runs_in_a_fresh_install(outside, index):
    code = BLOCKS[index]
    needs = [what for module, what in NEEDS.items() if re.search(rf"\b{module}\b", code)]
    if needs:
        pytest.skip(f"this example needs {', '.join(needs)}, which the fresh environment does not have "
                    f"(tests/test_readme.py runs it in the test environment)")
    outside("-c", code)

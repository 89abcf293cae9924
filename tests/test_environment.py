"""The environment variables refimpl reads (refimpl/_environment.py): each parsed with an error
that names it, each documented in the README's section "Environment variables"."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from refimpl import _environment

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("value, expected", [("1", True), ("0", False), ("no", False), ("NO", False), ("off", False),
                                             ("false", False), ("yes", True), ("True", True), (" on ", True),
                                             ("", True)])
def test_flags_read_the_usual_spellings(monkeypatch, value, expected):
    monkeypatch.setenv("REFIMPL_FAST", value)
    assert _environment.flag("REFIMPL_FAST", default=True) is expected


@pytest.mark.parametrize("value", ["abc", "2", "-1", "enable"])
def test_a_bad_flag_names_the_variable_and_its_value(monkeypatch, value):
    monkeypatch.setenv("REFIMPL_FAST", value)
    with pytest.raises(ValueError, match=re.escape(f"REFIMPL_FAST={value!r}")):
        _environment.flag("REFIMPL_FAST", default=True)


def run_python(code: str, **environment) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("REFIMPL_")}
    return subprocess.run([sys.executable, "-c", code], env={**env, **environment}, capture_output=True, text=True,
                          cwd=ROOT, timeout=120)


def test_refimpl_fast_is_read_at_import():
    assert run_python("import refimpl.fast as f; print(f.current_settings().enabled)",
                      REFIMPL_FAST="no").stdout.strip() == "False"
    assert run_python("import refimpl.fast as f; print(f.current_settings().enabled)").stdout.strip() == "True"
    failed = run_python("import refimpl", REFIMPL_FAST="abc")
    assert failed.returncode != 0
    assert "environment variable REFIMPL_FAST='abc' is not a boolean" in failed.stderr.splitlines()[-1]


def test_every_variable_the_package_reads_is_documented_in_the_readme():
    read = set()
    for path in (ROOT / "refimpl").rglob("*.py"):
        read |= set(re.findall(r'"(REFIMPL_[A-Z_]+)"', path.read_text()))
    assert read == {"REFIMPL_BACKEND", "REFIMPL_FAST"}
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("## Environment variables"):]
    section = section[:section.index("\n## ", 1)] if "\n## " in section[1:] else section
    for name in read | {"REFIMPL_HYPOTHESIS", "REFIMPL_REQUIRE_BOOK", "REFIMPL_NDADAM_OFFICIAL"}:
        assert f"`{name}`" in section, name

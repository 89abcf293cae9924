"""Every Python example in README.md runs as written."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from conftest import _cupy_reason

README = (Path(__file__).resolve().parents[1] / "README.md").read_text()
BLOCKS = re.findall(r"```python\n(.*?)```", README, flags=re.S)


@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_readme_example_runs(index):
    code = BLOCKS[index]
    if "set_backend(\"cupy\")" in code and _cupy_reason() is not None:
        pytest.skip(f"the backend-switch example needs a GPU: {_cupy_reason()}")
    exec(compile(code, f"README.md example {index}", "exec"), {})


def test_the_oracle_example_catches_the_wrong_convention():
    """The README claims that the oracle example fails with decoupled_weight_decay=False."""
    code = next(b for b in BLOCKS if "AdamW" in b).replace("decoupled_weight_decay=True", "decoupled_weight_decay=False")
    with pytest.raises(AssertionError):
        exec(compile(code, "README.md oracle example, L2", "exec"), {})

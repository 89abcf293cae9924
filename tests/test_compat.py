"""`python -m refimpl compat`: every installed peer is diagnosed, and the table says what it found.

The rows are measured once per session (module fixture, 100 float64 steps of the probe); each
peer's expected refimpl configuration is pinned here, so a peer release that changes its
arithmetic shows up as a failing row rather than a silently different table.
"""

from __future__ import annotations

import os

import pytest

from refimpl import _compat
from refimpl._cli import main

os.environ.setdefault("KERAS_BACKEND", "jax")  # before keras is first imported (tensorflow is not a peer)

EXPECTED = {
    # (peer, optimizer, options) -> the matching refimpl configuration, or None: nothing matches
    ("torch", "Adam", "lr=0.01"): "Adam()",
    ("torch", "Adam", "lr=0.01, weight_decay=0.01"): "Adam(weight_decay=0.01)",
    ("torch", "Adam", "lr=0.01, amsgrad=True"): "Adam(amsgrad=True)",
    ("torch", "AdamW", "lr=0.01, weight_decay=0.01"): "Adam(weight_decay=0.01, decoupled_weight_decay=True)",
    ("torch", "NAdam", "lr=0.01"): None,
    ("torch", "SGD", "lr=0.01, momentum=0.9"): "SGD(momentum=0.9)",
    ("torch", "SGD", "lr=0.01, momentum=0.9, nesterov=True"): "SGD(momentum=0.9, nesterov=True)",
    ("torch", "SGD", "lr=0.01, momentum=0.9, dampening=0.5"): "SGD(momentum=0.9, dampening=0.5)",
    ("optax", "adam", "learning_rate=0.01"): "Adam()",
    ("optax", "adam", "learning_rate=0.01, eps_root=1e-08"): "Adam(eps_root=1e-08)",
    ("optax", "adamw", "learning_rate=0.01, weight_decay=0.01"): "Adam(weight_decay=0.01, decoupled_weight_decay=True)",
    ("optax", "amsgrad", "learning_rate=0.01"): "Adam(amsgrad=True, amsgrad_max_of='v_hat')",
    ("optax", "nadam", "learning_rate=0.01"): None,
    ("optax", "sgd", "learning_rate=0.01, momentum=0.9"): "SGD(momentum=0.9)",
    ("keras", "Adam", "learning_rate=0.01"): "Adam(eps_hat=True)",
    ("keras", "Adam", "learning_rate=0.01, amsgrad=True"): "Adam(eps_hat=True, amsgrad=True)",
    ("keras", "AdamW", "learning_rate=0.01, weight_decay=0.01"):
        "Adam(weight_decay=0.01, eps_hat=True, decoupled_weight_decay=True)",
    ("keras", "SGD", "learning_rate=0.01, momentum=0.9"): "SGD(momentum=0.9)",
    ("keras", "SGD", "learning_rate=0.01, momentum=0.9, nesterov=True"): "SGD(momentum=0.9, nesterov=True)",
}


@pytest.fixture(scope="module")
def rows():
    peers = _compat.installed_peers()
    if not peers:
        pytest.skip("no peer library installed (pip install 'refimpl[peers]')")
    return _compat.compat_rows(100, peers=peers)


def test_every_installed_peer_is_diagnosed_as_expected(rows):
    found = {(r.library.split()[0], r.optimizer, r.options): r for r in rows}
    expected = {k: v for k, v in EXPECTED.items() if k[0] in {r.library.split()[0] for r in rows}}
    assert set(found) == set(expected)
    for key, label in expected.items():
        d = found[key].diagnosis
        if label is None:
            assert not d.matches and found[key].matches.startswith("none"), key
            assert found[key].error.startswith("(")
        else:
            assert [m.label for m in d.matches] == [label], (key, str(d))
            assert found[key].matches.startswith(f"`{label}`")
            # Another order of the same arithmetic: a handful of roundings over 100 steps.
            assert d.best.max_rel_err < 1e-14, key


def test_the_table_is_markdown_made_from_the_rows(rows):
    table = _compat.markdown(rows, 100)
    lines = table.splitlines()
    assert lines[0].startswith("| library | optimizer | options | refimpl configuration it matches | max rel error")
    assert lines[1] == "|---|---|---|---|---|"
    body = [line for line in lines[2:] if line.startswith("| ")]
    assert len(body) == len(rows)
    for line, r in zip(body, rows):
        assert line == f"| {r.library} | {r.optimizer} | {r.options} | {r.matches} | {r.error} |"
    assert "Measured by `python -m refimpl compat`" in table


def test_cli_compat_writes_the_table(tmp_path, capsys):
    pytest.importorskip("torch")
    out = tmp_path / "compat.md"
    assert main(["compat", "--peers", "torch", "--steps", "30", "-o", str(out)]) == 0
    assert "wrote the table (8 rows)" in capsys.readouterr().out
    text = out.read_text()
    assert "max rel error (30 float64 steps)" in text and "| torch " in text and "| optax " not in text


def test_cli_compat_refuses_unknown_or_missing_peers(monkeypatch, capsys):
    assert main(["compat", "--peers", "torch,mxnet"]) == 1
    assert "--peers names ['mxnet']" in capsys.readouterr().err
    monkeypatch.setattr(_compat, "installed_peers", lambda: [])
    assert main(["compat"]) == 1
    assert "no peer library is installed" in capsys.readouterr().err
    assert main(["compat", "--peers", "torch"]) == 1
    assert "cannot be imported here" in capsys.readouterr().err

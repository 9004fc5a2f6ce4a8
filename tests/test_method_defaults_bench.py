"""bench/method_defaults.py at its cheapest, one test per method: 2 steps from the method's pure defaults on a
FAST demo, evaluated before and after by its own recipe on held-out records (the published table runs 30 steps on
the FULL demo)."""
from __future__ import annotations

import json

import pytest

from bench.method_defaults import METHODS, run, table
from core.methods import resolve_defaults


@pytest.mark.parametrize("method", list(METHODS))
def test_the_method_runs_from_its_defaults_and_held_out_quality_does_not_fall(method, fast_demo, tmp_path,
                                                                              torch_single_thread):
    [r] = run(fast_demo, steps=2, methods=(method,), work=tmp_path / "work", fast=True)
    stage = METHODS[method][0]
    # the run used the method's default, scaled from the rate its init run recorded
    want = resolve_defaults(method, None, str(fast_demo / "runs" / stage))["optim.lr"][0]
    saved = json.loads((tmp_path / "work" / f"{method}-defaults" / "config.json").read_text())
    assert r["method"] == method and r["lr"] == saved["optim"]["lr"] == want, r
    # tolerance: two steps move a metric by rounding at most; a step at pretraining's rate would not
    slack = 0.02 * abs(r["before"]) + 1e-6
    assert r["after"] >= r["before"] - slack if r["higher_is_better"] else r["after"] <= r["before"] + slack, r
    assert f"| {method} | " in table([r], markdown=True)

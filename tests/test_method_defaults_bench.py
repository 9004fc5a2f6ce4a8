"""bench/method_defaults.py at its cheapest: every method, 2 steps from its pure defaults on a FAST demo, evaluated
before and after by its own recipe on held-out records (the published table runs 30 steps on the FULL demo)."""
from __future__ import annotations

import json

from bench.method_defaults import METHODS, run, table
from core.methods import resolve_defaults


def test_every_method_runs_from_its_defaults_and_held_out_quality_does_not_fall(fast_demo, tmp_path,
                                                                              torch_single_thread):
    rows = run(fast_demo, steps=2, work=tmp_path / "work", fast=True)
    assert [r["method"] for r in rows] == list(METHODS)
    for r in rows:
        stage = METHODS[r["method"]][0]
        # the run used the method's default, scaled from the rate its init run recorded
        want = resolve_defaults(r["method"], None, str(fast_demo / "runs" / stage))["optim.lr"][0]
        saved = json.loads((tmp_path / "work" / f"{r['method']}-defaults" / "config.json").read_text())
        assert r["lr"] == saved["optim"]["lr"] == want, r
        # tolerance: two steps move a metric by rounding at most; a step at pretraining's rate would not
        slack = 0.02 * abs(r["before"]) + 1e-6
        assert r["after"] >= r["before"] - slack if r["higher_is_better"] else r["after"] <= r["before"] + slack, r
    assert "| agent | " in table(rows, markdown=True)

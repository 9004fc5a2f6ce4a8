"""The one-command GPU check passes its CPU dry run: every section runs and the Markdown section is written (to a
temporary file here, never into docs/)."""
from __future__ import annotations

import pytest


def test_the_gpu_check_dry_run_runs_every_section_and_writes_its_markdown(tmp_path):
    pytest.importorskip("llama_cpp")
    from bench.gpu_check import SECTIONS, run
    from bench.gpu_recipes import RECIPES

    out = tmp_path / "benchmarks.md"
    out.write_text("# Benchmarks\n\n## Other section\n\nkept\n")
    result = run("cpu", dry_run=True, out=out)
    assert result["ok"], {name: result[name] for name in SECTIONS}
    assert [r["compiled"] for r in result["throughput"]["rows"]] == [False, True]
    assert result["launch_resume"]["killed"] and result["launch_resume"]["final_step"] == 8
    assert result["gguf_export"]["passed"] and result["decode"]["decode_tok_s"] > 0
    assert [r["recipe"] for r in result["recipes"]["rows"]] == list(RECIPES)
    assert {k: v for k, v in result["two_ranks"].items() if not k.endswith("_s") and k != "seconds_in_section"} == {
        "ok": True, "sft": "passed", "moe_pretrain": "passed", "ppo": "passed", "agent": "passed"}
    assert "CUDA" in result["over_count"]["message"] and result["preflight_launch"]["calibrated_step_s"] > 0
    text = out.read_text()
    assert "## Other section\n\nkept" in text and text.count("## GPU check (dry run on cpu)") == 1
    for name in SECTIONS[2:]:
        assert f"- **{name}**: passed" in text
    assert text.count("| passed |") == len(RECIPES)


def test_a_new_check_replaces_its_own_section_and_keeps_the_others(tmp_path):
    from bench.gpu_check import write_section

    out = tmp_path / "benchmarks.md"
    out.write_text("# Benchmarks\n\n## GPU check: H200\n\nold\n\n## Later\n\nkept\n")
    write_section(out, "## GPU check: H200\n\nnew\n")
    write_section(out, "## GPU check: A100\n\nother\n")
    assert out.read_text() == ("# Benchmarks\n\n## GPU check: H200\n\nnew\n\n## Later\n\nkept\n\n"
                               "## GPU check: A100\n\nother\n")

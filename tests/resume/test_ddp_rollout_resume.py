"""Two processes of an on-policy method, killed inside a rollout group: each rank's own cached rollout is in the
checkpoint (`recipe_ranks`), and the resumed two-rank run ends on the uninterrupted two-rank run's weights."""
from __future__ import annotations

import subprocess
import sys

import pytest

from core.train import checkpoint as ck
from core.train.trainer_state import load_trainer_state
from tests.fixtures.rl import rl_config
from tests.fixtures.train import REPO, read_events, subprocess_env

# torchrun runs this on each rank; KILL_AT makes rank 0 SIGKILL itself right after writing that checkpoint, and
# torchrun then ends the other rank: a real crash in the middle of a rollout group
TRAINER = r"""
import os, signal, sys
from core.train import checkpoint as ck
kill = os.environ.get("KILL_AT")
if kill:
    save = ck.save_checkpoint
    def saving_then_killed(run_dir, at, *args, **kwargs):
        path = save(run_dir, at, *args, **kwargs)
        if at == int(kill):
            os.kill(os.getpid(), signal.SIGKILL)
        return path
    ck.save_checkpoint = saving_then_killed
from core.train.cli import main
sys.exit(main())
"""


def _torchrun(script, config, resume=None, kill_at=None):
    env = subprocess_env()
    env["OMP_NUM_THREADS"] = "1"
    if kill_at is not None:
        env["KILL_AT"] = str(kill_at)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", str(script)]
    cmd += ["--resume", str(resume)] if resume else ["--config", str(config)]
    return subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, timeout=300)


def _weights(run_dir):
    from safetensors.torch import load_file

    return load_file(str(run_dir / ck.CKPT_DIR / ck.step_dir_name(3) / "model.safetensors"))


@pytest.mark.slow
def test_two_ranks_killed_inside_a_rollout_group_resume_each_ranks_rollout(rl_data, demo_sft_run, tmp_path):
    import torch

    script = tmp_path / "trainer.py"
    script.write_text(TRAINER, encoding="utf-8")
    configs = {}
    for name, save_every in (("whole", 0), ("killed", 1)):
        cfg = rl_config(tmp_path / name, demo_sft_run, [rl_data["rl"]], "grpo", max_steps=3, batch_size=4,
                        save_every=save_every, precision="fp32",
                        method_options={"num_generations": 2, "max_new_tokens": 8, "updates_per_rollout": 2,
                                        "sample_every": 0}, **{"optim.lr": 1e-3})
        configs[name] = tmp_path / f"{name}.json"
        configs[name].write_text(cfg.model_dump_json(), encoding="utf-8")
    whole = _torchrun(script, configs["whole"])
    assert whole.returncode == 0, whole.stderr.decode()[-3000:]

    killed = _torchrun(script, configs["killed"], kill_at=1)
    assert killed.returncode != 0
    assert [c.name for c in ck.list_checkpoints(tmp_path / "killed")] == [ck.step_dir_name(1)]
    saved = load_trainer_state(tmp_path / "killed" / ck.CKPT_DIR / ck.step_dir_name(1) / ck.TRAINER_FILE)
    caches = [[tuple(e["prompts"]) for e in r["rollout_cache"]] for r in saved["recipe_ranks"]]
    # one update of the group done, one to go, on each rank, and each rank's own prompts
    assert len(caches) == 2 and all(len(c) == 1 for c in caches) and caches[0] != caches[1]
    assert [e["updates"] for r in saved["recipe_ranks"] for e in r["rollout_cache"]] == [1, 1]

    resumed = _torchrun(script, None, resume=tmp_path / "killed")
    assert resumed.returncode == 0, resumed.stderr.decode()[-3000:]
    started = [e for e in read_events(tmp_path / "killed") if e["type"] == "run_started"]
    assert [s["resumed_from"] for s in started] == [None, 1]
    want, got = _weights(tmp_path / "whole"), _weights(tmp_path / "killed")
    assert sorted(want) == sorted(got) and all(torch.equal(want[k], got[k]) for k in want)

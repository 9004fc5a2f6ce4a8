"""A real single-host Slurm cluster (Debian's slurm-wlm: slurmctld + slurmd, munge), started by this module from a
generated slurm.conf on 127.0.0.1, and the studio's Slurm target driving it: a tiny run submitted with sbatch and
followed to completion; a second run cancelled (scancel) after a checkpoint and resumed (resubmitted with
--resume), ending with exactly the first run's weights. (A hard kill of a whole multi-node job is in
test_multinode.py: Slurm itself always cancels with SIGTERM first.) Skips with the reason where the packages are missing
or the daemons cannot start here. Each run is one Slurm job: srun → torchrun (c10d rendezvous) → core.train."""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from core.launch.targets import make_target, save_targets
from tests.fixtures.train import head_lines

pytestmark = [pytest.mark.slow, pytest.mark.skipif(sys.platform != "linux", reason="Slurm runs on Linux")]
DAEMONS = ("munged", "slurmctld", "slurmd", "sbatch", "squeue", "scancel")
REPO = Path(__file__).resolve().parents[1]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _slurm_conf(d: Path) -> str:
    # Plugins that need neither cgroups nor accounting: a container or CI runner has neither to give.
    return f"""ClusterName=minimind-test
SlurmctldHost={socket.gethostname()}(127.0.0.1)
SlurmctldPort={_free_port()}
SlurmdPort={_free_port()}
AuthType=auth/munge
AuthInfo=socket={d}/munge.socket
CredType=cred/munge
SlurmUser=root
SlurmdUser=root
StateSaveLocation={d}/state
SlurmdSpoolDir={d}/spool
SlurmctldPidFile={d}/slurmctld.pid
SlurmdPidFile={d}/slurmd.pid
SlurmctldLogFile={d}/slurmctld.log
SlurmdLogFile={d}/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SchedulerType=sched/builtin
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
MpiDefault=none
ReturnToService=2
KillWait=30
MinJobAge=600
NodeName=localhost NodeAddr=127.0.0.1 CPUs={os.cpu_count()} RealMemory=1 State=UNKNOWN
PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP OverSubscribe=YES
"""


def _fail_or_skip(reason: str) -> None:
    if os.environ.get("CI", "").lower() in ("1", "true", "yes") and os.geteuid() == 0:
        pytest.fail(f"{reason}; scripts/install.sh installs slurm-wlm and munge for CI", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="module")
def slurm_cluster(tmp_path_factory):
    """SLURM_CONF of a running one-node cluster; the daemons are stopped afterwards."""
    missing = [name for name in DAEMONS if not shutil.which(name, path=f"{os.environ['PATH']}:/usr/sbin:/sbin")]
    if missing:
        _fail_or_skip(f"Slurm is not installed ({', '.join(missing)} missing; apt-get install slurm-wlm munge)")
    if os.geteuid() != 0:
        pytest.skip("slurmd must run as root to start jobs (this test starts its own cluster)")
    d = tmp_path_factory.mktemp("slurm")
    d.chmod(0o700)
    for sub in ("state", "spool"):
        (d / sub).mkdir()
    (d / "munge.key").write_bytes(os.urandom(1024))
    (d / "munge.key").chmod(0o600)
    (d / "slurm.conf").write_text(_slurm_conf(d))
    env = {**os.environ, "SLURM_CONF": str(d / "slurm.conf")}
    sbin = lambda name: shutil.which(name, path=f"{os.environ['PATH']}:/usr/sbin:/sbin")  # noqa: E731
    commands = [[sbin("munged"), "--foreground", "--force", f"--key-file={d}/munge.key", f"--socket={d}/munge.socket",
                 f"--pid-file={d}/munged.pid", f"--log-file={d}/munged.log", f"--seed-file={d}/munge.seed"],
                [sbin("slurmctld"), "-D", "-c", "-i"], [sbin("slurmd"), "-D", "-N", "localhost"]]
    daemons = []
    try:
        for argv in commands:
            with open(d / f"{Path(argv[0]).name}.out", "wb") as out:
                daemons.append(subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT))
            time.sleep(0.5)
        deadline = time.monotonic() + 30
        while True:
            state = subprocess.run(["sinfo", "--noheader", "--format=%t"], env=env, capture_output=True, text=True)
            if state.stdout.strip() == "idle":
                break
            if time.monotonic() > deadline or any(p.poll() is not None for p in daemons):
                logs = "".join((d / n).read_text(errors="replace")[-600:] for n in ("slurmctld.log", "slurmd.log")
                               if (d / n).exists())
                _fail_or_skip(f"the test's Slurm cluster did not come up (sinfo: {state.stdout or state.stderr!r}); "
                              f"logs end with: {logs}")
            time.sleep(0.5)
        yield d / "slurm.conf"
    finally:
        for proc in reversed(daemons):
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()


@pytest.fixture()
def slurm_manager(qtbot, store, workspace, slurm_cluster, monkeypatch):
    """The studio's RunManager with a Slurm target ("cluster") for the test's cluster."""
    from studio.worker.run_manager import RunManager

    monkeypatch.setenv("SLURM_CONF", str(slurm_cluster))  # sbatch/squeue/scancel, and the jobs, find the cluster
    target = make_target("slurm", name="cluster", nodes=1, gpus_per_node=1, use_gpus=False,
                         torchrun=str(Path(sys.executable).parent / "torchrun"), workdir=str(REPO),
                         rdzv_port=_free_port(), setup="export OMP_NUM_THREADS=1")
    save_targets(workspace.root / "targets.json", [target], default="cluster")
    manager = RunManager(store, workspace.runs_dir, poll_ms=100)
    manager.remote.interval_s = 0.5
    yield manager
    for run_id in manager.live_run_ids():
        manager.kill(run_id)
    manager.shutdown()


@pytest.fixture()
def run_config(workspace, shared_data, tiny_tokenizer_dir):
    data = head_lines(shared_data / "pretrain.jsonl", workspace.datasets_dir / "pretrain-200.jsonl", 200)
    return {"method": "pretrain", "model": "tiny", "max_steps": 120, "batch_size": 4, "device": "cpu",
            "precision": "fp32", "log_every": 5, "save_every": 10,
            "data": {"files": [str(data)], "seq_len": 32, "tokenizer": str(tiny_tokenizer_dir),
                     "cache_dir": str(workspace.datasets_dir / "cache")}}


def _finished(qtbot, manager, run_id, timeout=240_000) -> str:
    with qtbot.waitSignal(manager.runFinished, timeout=timeout,
                          check_params_cb=lambda rid, _status: rid == run_id) as blocker:
        pass
    return blocker.args[1]


def _final_weights(run_dir: Path) -> dict:
    from safetensors.torch import load_file

    from core.model.io import resolve_checkpoint

    return load_file(str(Path(resolve_checkpoint(run_dir)) / "model.safetensors"))


def test_a_run_on_slurm_completes_and_a_cancelled_job_resumes_to_the_same_weights(qtbot, slurm_manager, store,
                                                                               run_config):
    manager = slurm_manager
    first = manager.launch({**run_config, "name": "slurm-a"})  # the workspace's default target: Slurm
    first_dir = Path(store.get_run(first).run_dir)
    assert (first_dir / "launch.sbatch").is_file()
    assert _finished(qtbot, manager, first) == "completed", store.get_run(first).status_message
    started = store.events(first, ["run_started"])[-1]
    assert started["world_size"] == 1 and list(first_dir.glob("slurm-*.out"))

    second = manager.launch({**run_config, "name": "slurm-b"})
    qtbot.waitSignal(manager.checkpointAdded, timeout=240_000,
                     check_params_cb=lambda rid, _path: rid == second).wait()
    manager.stop(second)  # scancel: SIGTERM to the whole job; the trainer checkpoints and stops
    assert _finished(qtbot, manager, second) == "stopped", store.get_run(second).status_message
    assert 0 < store.get_run(second).last_step < run_config["max_steps"]

    manager.resume(second)  # resubmitted: the launch file now ends with --resume <run folder>
    second_dir = Path(store.get_run(second).run_dir)
    assert (second_dir / "launch.sbatch").read_text().rstrip().endswith(f"--resume {second_dir}")
    assert _finished(qtbot, manager, second) == "completed", store.get_run(second).status_message
    assert store.events(second, ["run_started"])[-1]["resumed_from"] is not None

    a, b = _final_weights(first_dir), _final_weights(second_dir)
    assert a.keys() == b.keys()
    assert all((a[k] == b[k]).all() for k in a), "resume after scancel is not exact"

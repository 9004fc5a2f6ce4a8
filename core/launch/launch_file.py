"""The launch files a cluster target writes into the run folder: an sbatch script or a SkyPilot task YAML.

Both are meant to be read and run by hand (``sbatch launch.sbatch``, ``sky launch -c minimind sky-task.yaml``);
the studio submits exactly the file it wrote. Each node runs one torchrun agent; the agents meet at the first
node through torchrun's c10d rendezvous, and only rank 0 writes events.jsonl and checkpoints into the shared run
folder (docs/cluster.md).

Every value in them has passed ``core.launch.safe_values`` (the target's fields when it was loaded, the run
folder here), comment lines carry no names, and the YAML is written by a YAML emitter, never by hand.
"""
from __future__ import annotations

import shlex
from pathlib import Path

import yaml

from core.launch.safe_values import check_run_folder
from core.launch.targets import SkyPilotTarget, SlurmTarget

REPO_ROOT = Path(__file__).resolve().parents[2]
FILE_NAMES = {"slurm": "launch.sbatch", "skypilot": "sky-task.yaml"}
DEFAULT_MOUNT = "/minimind-runs"  # where a SkyPilot target's bucket is mounted when remote_runs_dir is empty


def launch_file_name(target) -> str:
    return FILE_NAMES[target.kind]


def remote_root(target) -> str:
    """The runs folder as the nodes see it ('' = the same path as on the studio's side)."""
    return target.remote_runs_dir.rstrip("/") or (DEFAULT_MOUNT if getattr(target, "bucket", "") else "")


def remote_run_dir(target, run_dir: Path | str) -> str:
    """The run folder as the nodes see it: the same path, or the same folder name under the remote root."""
    root = remote_root(target)
    return f"{root}/{Path(run_dir).name}" if root else str(run_dir)


def trainer_args(remote_dir: str, resume: bool) -> list[str]:
    """``-m core.train`` arguments: the run folder's config.json, or ``--resume`` of the folder itself."""
    return ["--resume", remote_dir] if resume else ["--config", f"{remote_dir}/config.json"]


def torchrun_line(target, nnodes: str, head: str, job_id: str, remote_dir: str, resume: bool) -> str:
    """The one torchrun command both launch files run on every node (shell variables left for the shell)."""
    args = [f"--nnodes {nnodes}", f"--nproc-per-node {target.gpus_per_node}", f"--rdzv-id {job_id}",
            "--rdzv-backend c10d", f'--rdzv-endpoint "{head}:{target.rdzv_port}"', "-m core.train",
            " ".join(shlex.quote(a) for a in trainer_args(remote_dir, resume))]
    return f"{target.torchrun} " + " \\\n    ".join(args)


def _workdir(target) -> str:
    return target.workdir or str(REPO_ROOT)


def slurm_script(target: SlurmTarget, run_dir: Path | str, resume: bool = False) -> str:
    remote = remote_run_dir(target, run_dir)
    sbatch = [f"--job-name=minimind-{Path(run_dir).name}", f"--nodes={target.nodes}", "--ntasks-per-node=1",
              f"--output={remote}/slurm-%j.out", f"--chdir={_workdir(target)}"]
    if target.use_gpus:
        sbatch.append(f"--gres={target.gres}" if target.gres else f"--gpus-per-node={target.gpus_per_node}")
    if target.partition:
        sbatch.append(f"--partition={target.partition}")
    if target.time_limit:
        sbatch.append(f"--time={target.time_limit}")
    sbatch += target.sbatch_options
    lines = ["#!/bin/bash",
             "# A MiniMind run, written by MiniMind Studio. Submit it by hand from the run folder with: "
             f"sbatch {FILE_NAMES['slurm']}",
             "# One srun task per node runs a torchrun agent; the agents meet at the first node (c10d).",
             *(f"#SBATCH {opt}" for opt in sbatch),
             "set -euo pipefail",
             f"cd {shlex.quote(_workdir(target))}",
             *([target.setup.strip()] if target.setup.strip() else []),
             'export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"',
             'head_node=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)',
             "srun --ntasks-per-node=1 --kill-on-bad-exit=1 "
             + torchrun_line(target, '"$SLURM_NNODES"', "$head_node", '"$SLURM_JOB_ID"', remote, resume),
             ""]
    return "\n".join(lines)


class _TaskDumper(yaml.SafeDumper):
    """safe_dump's emitter, with multi-line strings (setup, run) as literal blocks so the file reads as shell."""


def _str_style(value: str) -> str | None:
    if not value.replace("\n", "").isprintable():
        return '"'  # escaped: a raw \x85 or \u2028 would be read back as a line break
    return "|" if "\n" in value else None


_TaskDumper.add_representer(str, lambda dumper, value: dumper.represent_scalar(
    "tag:yaml.org,2002:str", value, style=_str_style(value)))


def skypilot_task(target: SkyPilotTarget, run_dir: Path | str, resume: bool = False) -> dict:
    """The SkyPilot task as data (keys in SkyPilot's documented order)."""
    remote = remote_run_dir(target, run_dir)
    task = {"name": f"minimind-{Path(run_dir).name}", "num_nodes": target.nodes}
    resources = {"accelerators": target.accelerators, "cloud": target.cloud}
    if any(resources.values()):
        task["resources"] = {k: v for k, v in resources.items() if v}
    if not target.workdir:  # SkyPilot copies this checkout to ~/sky_workdir on every node and runs there
        task["workdir"] = str(REPO_ROOT)
    if target.bucket:  # the runs folder, mounted on every node (the studio mounts the same bucket)
        task["file_mounts"] = {remote_root(target): {"source": target.bucket, "mode": "MOUNT"}}
    task["envs"] = {"PYTHONUNBUFFERED": "1"}
    if target.setup.strip():
        task["setup"] = target.setup.strip("\n") + "\n"
    run = [*([f"cd {shlex.quote(target.workdir)}"] if target.workdir else []),
           'export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"',
           'head_node=$(echo "$SKYPILOT_NODE_IPS" | head -n 1)',
           torchrun_line(target, '"$SKYPILOT_NUM_NODES"', "$head_node", '"$SKYPILOT_TASK_ID"', remote, resume)]
    task["run"] = "\n".join(run) + "\n"
    return task


def skypilot_yaml(target: SkyPilotTarget, run_dir: Path | str, resume: bool = False) -> str:
    name = FILE_NAMES["skypilot"]
    header = (f"# A MiniMind run, written by MiniMind Studio. Run it by hand with: sky launch -c CLUSTER {name}\n"
              f"#   (or, restarted on preemption: sky jobs launch {name})\n")
    return header + yaml.dump(skypilot_task(target, run_dir, resume), Dumper=_TaskDumper, sort_keys=False,
                              allow_unicode=True, width=1 << 16)


def check_launch_run_dir(target, run_dir: Path | str) -> None:
    """LaunchValueError when the run folder's name or its path as the nodes see it cannot go into a launch file."""
    check_run_folder(Path(run_dir).name, remote_run_dir(target, run_dir))


def render_launch_file(target, run_dir: Path | str, resume: bool = False) -> str:
    """The launch file's text; LaunchValueError when the run folder cannot go into it safely."""
    if target.kind == "slurm":
        check_launch_run_dir(target, run_dir)
        return slurm_script(target, run_dir, resume)
    if target.kind == "skypilot":
        check_launch_run_dir(target, run_dir)
        return skypilot_yaml(target, run_dir, resume)
    raise ValueError(f"target {target.name!r} runs on this machine: it has no launch file")


def write_launch_file(target, run_dir: Path, resume: bool = False) -> Path:
    """Write (or rewrite, e.g. for a resume) the target's launch file into ``run_dir``; its path."""
    path = Path(run_dir) / launch_file_name(target)
    path.write_text(render_launch_file(target, run_dir, resume), encoding="utf-8")
    if target.kind == "slurm":
        path.chmod(0o755)
    return path

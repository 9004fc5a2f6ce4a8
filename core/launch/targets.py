"""Launch targets: where a run trains — this machine, a Slurm cluster, or SkyPilot (Kubernetes, clouds, Slurm).

Targets are plain data kept in the workspace's ``targets.json`` (``{"targets": [...]}``), edited in the studio's
Settings dialog or by hand, and read by ``minimind train --target NAME`` and ``minimind launch-file``. The
``local`` target always exists and is today's path (the studio spawns the trainer itself). A cluster target
only *describes* the job; Slurm or SkyPilot schedule it (see docs/cluster.md). We write no scheduler of our own.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, field_validator

from core.launch import safe_values as safe

WORKSPACE_ENV = "MINIMIND_WORKSPACE"  # the studio's workspace folder (studio.workspace reads the same two facts)
DEFAULT_WORKSPACE = Path.home() / "MiniMindStudio"
CACHE_DIR_NAME = "cache"
TARGETS_FILE = "targets.json"
LOCAL = "local"
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,39}$"


class TargetError(ValueError):
    """A target that is missing or malformed; the message names the file and the field."""


class _Target(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(pattern=NAME_PATTERN)


class LocalTarget(_Target):
    """This machine: the studio (or ``minimind train``) runs the trainer itself."""
    kind: Literal["local"] = "local"


class _ClusterTarget(_Target):
    nodes: int = Field(1, ge=1, description="machines the job spans")
    gpus_per_node: int = Field(1, ge=1, description="trainer processes per machine (torchrun --nproc-per-node)")
    # The run folder must be on storage both the studio and every node can see. ``remote_runs_dir`` is that
    # folder as the nodes see it ("" = the same path as on the studio's machine, e.g. an NFS home).
    runs_dir: str = Field("", description="where run folders are created on the studio's side ('' = workspace runs/)")
    remote_runs_dir: str = Field("", description="the same folder as the nodes see it ('' = same path)")
    workdir: str = Field("", description="the MiniMind checkout on the nodes ('' = this checkout's path)")
    setup: str = Field("", description="shell lines run first on every node, e.g. 'source .venv/bin/activate'")
    torchrun: str = Field("torchrun", description="the torchrun command on the nodes")
    rdzv_port: int = Field(29500, ge=1, le=65535, description="c10d rendezvous port on the first node")

    # Every string field of a cluster target reaches a launch file or a scheduler's command line
    # (core.launch.safe_values says why each is held to its set). check_fields=False: some are the kinds' own.
    @field_validator("remote_runs_dir", "workdir", "bucket", check_fields=False)
    @classmethod
    def _path(cls, value: str) -> str:
        return safe.ensure(value, value and safe.refusal(value, safe.PATH, safe.PATH_CHARS))

    @field_validator("partition", "time_limit", "gres", "accelerators", "cloud", check_fields=False)
    @classmethod
    def _words(cls, value: str) -> str:
        return safe.ensure(value, value and safe.refusal(value, safe.WORD, safe.WORD_CHARS))

    @field_validator("runs_dir", "torchrun")
    @classmethod
    def _one_line(cls, value: str) -> str:
        return safe.ensure(value, safe.one_line_refusal(value))

    @field_validator("setup")
    @classmethod
    def _lines(cls, value: str) -> str:
        return safe.ensure(value, safe.lines_refusal(value))


class SlurmTarget(_ClusterTarget):
    """An ``sbatch`` script: one ``srun`` task per node, each a torchrun agent meeting at the first node."""
    kind: Literal["slurm"] = "slurm"
    partition: str = ""
    time_limit: str = Field("", description="sbatch --time, e.g. 24:00:00 ('' = the partition's default)")
    gres: str = Field("", description="sbatch --gres ('' = gpu:<gpus_per_node> when GPUs are asked for)")
    use_gpus: bool = Field(True, description="ask Slurm for GPUs (off for CPU-only clusters)")
    sbatch_options: list[str] = Field(default_factory=list, description="extra '#SBATCH' lines, e.g. --account=x")

    @field_validator("sbatch_options")
    @classmethod
    def _options(cls, options: list[str]) -> list[str]:
        for option in options:
            safe.ensure(option, safe.one_line_refusal(option))
            if not option.startswith("-"):
                raise ValueError(f"{option!r} is not an sbatch option (write it as --name=value)")
        return options


class SkyPilotTarget(_ClusterTarget):
    """A SkyPilot task YAML (``sky launch`` / ``sky jobs launch``); SkyPilot picks the cloud or cluster."""
    kind: Literal["skypilot"] = "skypilot"
    accelerators: str = Field("", description="resources.accelerators, e.g. A100:8 ('' = CPU only)")
    cloud: str = Field("", description="resources.cloud, e.g. aws, gcp, kubernetes ('' = SkyPilot chooses)")
    cluster: str = Field("minimind", description="the SkyPilot cluster name (sky launch -c / sky cancel)")
    bucket: str = Field("", description="bucket mounted at remote_runs_dir, e.g. s3://team/minimind-runs "
                                        "('' = remote_runs_dir is a shared path already on the nodes)")

    @field_validator("cluster")
    @classmethod
    def _cluster(cls, value: str) -> str:  # an argument of sky launch / sky cancel: never an option
        return safe.ensure(value, safe.refusal(value, safe.NAME, safe.NAME_CHARS))


Target = Annotated[Union[LocalTarget, SlurmTarget, SkyPilotTarget], Field(discriminator="kind")]
KINDS = {"local": LocalTarget, "slurm": SlurmTarget, "skypilot": SkyPilotTarget}
_TARGET_LIST = TypeAdapter(list[Target])


def workspace_root() -> Path:
    env = os.environ.get(WORKSPACE_ENV)
    return Path(env).expanduser() if env else DEFAULT_WORKSPACE


def workspace_cache_dir(root: Path | None = None) -> Path:
    """The workspace's token caches: `minimind data prepare` fills it by default, the studio's runs read it, so a
    cache prepared ahead is found by every later run on the same data and tokenizer."""
    return Path(root if root is not None else workspace_root()) / CACHE_DIR_NAME


def targets_path(root: Path | None = None) -> Path:
    return Path(root if root is not None else workspace_root()) / TARGETS_FILE


def load_targets(path: Path) -> list:
    """The targets in ``path`` (``local`` first, always present); a missing file means only ``local``."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return [LocalTarget(name=LOCAL)]
    except (OSError, json.JSONDecodeError) as exc:
        raise TargetError(f"{path}: cannot read the targets ({exc})") from exc
    try:
        targets = _TARGET_LIST.validate_python(data.get("targets", []) if isinstance(data, dict) else data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise TargetError(f"{path}: targets.{where}: {first['msg']}") from exc
    return _with_local(targets, str(path))


def _with_local(targets: list, where: str) -> list:
    names = [t.name for t in targets]
    duplicate = next((n for n in names if names.count(n) > 1), None)
    if duplicate:
        raise TargetError(f"{where}: two targets are named {duplicate!r}; names must be unique")
    if LOCAL in names and not isinstance(targets[names.index(LOCAL)], LocalTarget):
        raise TargetError(f"{where}: the name 'local' is reserved for this machine")
    rest = [t for t in targets if t.name != LOCAL]
    return [LocalTarget(name=LOCAL)] + rest


def load_default_target(path: Path) -> str:
    """The target new studio runs launch on (``default`` in targets.json; ``local`` when unset or unknown)."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
        name = data.get("default", LOCAL) if isinstance(data, dict) else LOCAL
        return name if any(t.name == name for t in load_targets(path)) else LOCAL
    except (OSError, ValueError):
        return LOCAL


def save_targets(path: Path, targets: list, default: str = LOCAL) -> None:
    """Write the targets (``local`` is implicit and not written); written whole, then renamed into place."""
    targets = _with_local(list(targets), str(path))
    find_target(targets, default)
    data = {"default": default, "targets": [t.model_dump() for t in targets if t.name != LOCAL]}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    tmp.replace(path)


def find_target(targets: list, name: str):
    for target in targets:
        if target.name == name:
            return target
    known = ", ".join(t.name for t in targets)
    raise TargetError(f"no launch target named {name!r} (known: {known}); add it in the studio's "
                      f"Settings > Launch targets or in {TARGETS_FILE}")


def make_target(kind: str, **fields):
    """A validated target of ``kind`` (the Settings dialog's constructor)."""
    if kind not in KINDS:
        raise TargetError(f"unknown target kind {kind!r} (one of {', '.join(KINDS)})")
    try:
        return KINDS[kind](**fields)
    except ValidationError as exc:
        first = exc.errors()[0]
        raise TargetError(f"{'.'.join(str(p) for p in first['loc'])}: {first['msg']}") from exc

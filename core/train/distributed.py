"""torchrun process-group set-up and the few collectives the engine needs (no-ops in a single process)."""
from __future__ import annotations

import os
import sys
from datetime import timedelta

import torch
import torch.distributed as dist


def world() -> tuple[int, int, int]:
    """(rank, local_rank, world_size) from torchrun's environment; (0, 0, 1) when run directly."""
    return (int(os.environ.get("RANK", 0)), int(os.environ.get("LOCAL_RANK", 0)), int(os.environ.get("WORLD_SIZE", 1)))


BACKEND_ENV = "MINIMIND_DIST_BACKEND"  # overrides the backend: the GPU check runs two gloo ranks on one GPU


def backend(device_type: str, platform: str = sys.platform) -> str:
    """NCCL on CUDA; gloo on CPU/MPS and on Windows, where NCCL does not exist; `MINIMIND_DIST_BACKEND` wins."""
    forced = os.environ.get(BACKEND_ENV)
    if forced:
        return forced
    return "nccl" if device_type == "cuda" and platform != "win32" else "gloo"


def init(device_type: str) -> None:
    """Join the process group under torchrun (`backend`)."""
    _, _, ws = world()
    if ws > 1 and not dist.is_initialized():
        chosen = backend(device_type)
        if chosen == "nccl":
            disable_p2p_without_peer_access()
        dist.init_process_group(chosen, timeout=timedelta(minutes=30))


def too_many_ranks(ranks: int, visible: int) -> str | None:
    """The refusal when `ranks` processes on one machine would each need their own of `visible` CUDA GPUs (rank 1
    would otherwise fail with "invalid device ordinal" while rank 0 waits for it); None when they fit."""
    if ranks <= visible:
        return None
    cvd = os.environ.get("CUDA_VISIBLE_DEVICES")
    shown = f" (CUDA_VISIBLE_DEVICES={cvd})" if cvd is not None else ""
    return (f"n_gpus: {ranks} GPUs were asked for, but this machine has {visible} CUDA GPU"
            f"{'' if visible == 1 else 's'}{shown}; set n_gpus to {max(visible, 1)} or fewer")


def rank_gpu_problem(device: str) -> str | None:
    """`too_many_ranks` for this process under torchrun: the ranks it started on this machine (LOCAL_WORLD_SIZE)
    against the CUDA GPUs visible here. Every rank finds the same answer, so all of them stop before
    init_process_group and none waits for the others."""
    _, local_rank, ws = world()
    if ws == 1 or device not in ("auto", "cuda") or not torch.cuda.is_available():
        return None
    local = max(int(os.environ.get("LOCAL_WORLD_SIZE", 0)), local_rank + 1)
    return too_many_ranks(local, torch.cuda.device_count())


def p2p_unusable(names: list[str], peer_access) -> bool:
    """Whether NCCL's peer-to-peer transport should be off: GeForce cards, at least one pair of which has no peer
    access (`peer_access(i, j)`). NCCL may still pick P2P there and hang or corrupt the all-reduce."""
    if len(names) < 2 or not any("geforce" in n.lower() for n in names):
        return False
    return not all(peer_access(i, j) for i in range(len(names)) for j in range(len(names)) if i != j)


def disable_p2p_without_peer_access() -> None:
    """Set NCCL_P2P_DISABLE=1 (before NCCL starts) where `p2p_unusable`; a value the user set is kept."""
    if "NCCL_P2P_DISABLE" in os.environ or not torch.cuda.is_available():
        return
    names = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    if p2p_unusable(names, torch.cuda.can_device_access_peer):
        os.environ["NCCL_P2P_DISABLE"] = "1"
        print("NCCL_P2P_DISABLE=1: these GeForce GPUs have no peer access to each other", file=sys.stderr)


def active() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def all_reduce_sum(values: list[float], device: torch.device) -> list[float]:
    if not active():
        return list(values)
    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return t.tolist()


def all_reduce_tensor(t: torch.Tensor) -> torch.Tensor:
    """Sum of `t` over ranks, on the device (no host sync); `t` itself when there is one process."""
    if not active():
        return t
    t = t.clone()
    dist.all_reduce(t)
    return t


def any_rank(flag: bool, device: torch.device) -> bool:
    """True if the flag is set on any rank (e.g. a stop signal that reached only some processes)."""
    if not active():
        return flag
    t = torch.tensor([1 if flag else 0], device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item())


def gather_objects(obj) -> list:
    if not active():
        return [obj]
    out = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


def broadcast_object(obj):
    if not active():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def barrier() -> None:
    if active():
        dist.barrier()


def shutdown() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()

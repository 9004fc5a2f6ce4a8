"""What a first CUDA run needs, checked on CPU: pre-flight calibrates in a child process, a run that asks for more
GPUs than the machine has is refused with the cause, the DDP backend and NCCL settings per platform, and NVML reads
the run's own GPU."""
from __future__ import annotations

import json
import sys
import time
from types import SimpleNamespace

import pytest
import torch

from core.train import distributed


# ---- pre-flight's calibration runs in a child process -------------------------------------------------------
def test_preflight_calibrates_in_a_child_process_and_reads_the_device_there(monkeypatch, tmp_path,
                                                                           tiny_tokenizer_dir):
    """The studio process never runs a step (a model, AdamW state or CUDA context left there would be missing from
    the GPU for the run); the child answers the step time and what the device offers."""
    import core.train.calibration as calibration
    from core.tokenizer import MiniMindTokenizer
    from studio.panes.config.preflight import DeviceProbe, time_estimate

    def in_this_process(*args, **kwargs):
        raise AssertionError("calibrated inside the studio process")

    monkeypatch.setattr(calibration, "measure_step_seconds", in_this_process)
    data = tmp_path / "pretrain.jsonl"
    data.write_text("".join(json.dumps({"text": "a cat sat on the mat " * 4}) + "\n" for _ in range(8)))
    model = {"vocab_size": 64, "hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2,
             "num_key_value_heads": 1}
    config = {"method": "pretrain", "model": model, "device": "cpu", "precision": "fp32", "batch_size": 2,
              "max_steps": 10, "data": {"files": [str(data)], "seq_len": 16}}
    workspace = SimpleNamespace(root=tmp_path)
    probe = DeviceProbe(config)
    t = time_estimate(config, {"per_gpu_batch": 2, "seq": 16}, "pretrain", MiniMindTokenizer.load(tiny_tokenizer_dir),
                      workspace, lambda: False, probe=probe)
    assert t["step_seconds"] > 0 and t["cached"] is False and t["steps"] == 10
    assert probe.facts == {"type": "cpu", "count": 0}  # reported by the child


def test_a_cancelled_calibration_kills_its_child():
    from core.train.calibration import measure_in_child

    started = time.monotonic()
    slow = [sys.executable, "-c", "import time; time.sleep(60)"]
    assert measure_in_child(slow, "cpu", None, cancelled=lambda: time.monotonic() - started > 0.5) is None
    assert time.monotonic() - started < 10


# ---- more GPUs asked for than the machine has --------------------------------------------------------------
def _one_gpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)


def test_torchrun_ranks_beyond_the_visible_gpus_are_refused_before_the_process_group(monkeypatch, tmp_path, capsys):
    """Every rank refuses (none is left waiting in init_process_group); rank 0 says why on the event stream."""
    from core.train.cli import EXIT_CONFIG, main

    _one_gpu(monkeypatch)
    monkeypatch.setattr(torch.distributed, "init_process_group",
                        lambda *a, **k: pytest.fail("joined the process group"))
    config = tmp_path / "run.json"
    config.write_text(json.dumps({"method": "pretrain", "model": "tiny", "device": "cuda",
                                  "data": {"files": [str(tmp_path / "x.jsonl")]}}))
    for rank in ("1", "0"):
        monkeypatch.setenv("RANK", rank)
        monkeypatch.setenv("LOCAL_RANK", rank)
        monkeypatch.setenv("WORLD_SIZE", "2")
        monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")
        monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0")
        assert main(["--config", str(config)]) == EXIT_CONFIG
    events = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    assert [e["type"] for e in events] == ["error", "run_finished"]  # from rank 0 only
    assert events[0]["message"] == ("n_gpus: 2 GPUs were asked for, but this machine has 1 CUDA GPU "
                                    "(CUDA_VISIBLE_DEVICES=0); set n_gpus to 1 or fewer")


def test_one_rank_per_visible_gpu_and_cpu_ranks_pass(monkeypatch):
    _one_gpu(monkeypatch)
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "1")  # two machines of one GPU each
    assert distributed.rank_gpu_problem("cuda") is None
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")
    assert distributed.rank_gpu_problem("cpu") is None  # gloo ranks on CPU need no GPU
    assert "2 GPUs were asked for" in distributed.rank_gpu_problem("auto")


def test_preflight_refuses_more_gpus_than_the_child_saw(monkeypatch):
    from studio.panes.config.preflight import DeviceProbe, check_device

    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    probe = DeviceProbe({"device": "cuda"})
    probe.facts = {"type": "cuda", "count": 1, "free": 20e9, "total": 24e9}
    result = {"problems": []}
    estimate = {"total": 20.4e9, "runtime": 0.5e9}  # fits: the child's free figure already lacks a CUDA context
    check_device({"device": "cuda", "n_gpus": 2}, estimate, probe, lambda: False, result)
    assert result["problems"] == ["n_gpus: 2 GPUs were asked for, but this machine has 1 CUDA GPU; "
                                  "set n_gpus to 1 or fewer"]
    result = {"problems": []}
    check_device({"device": "cuda", "n_gpus": 1}, {"total": 21e9, "runtime": 0.5e9}, probe, lambda: False, result)
    assert result["problems"] and result["problems"][0].startswith("memory: the run needs about 20.5 GB")


# ---- backend and NCCL settings -----------------------------------------------------------------------------
def test_the_backend_is_nccl_on_linux_cuda_gloo_on_windows_and_elsewhere_and_can_be_forced(monkeypatch):
    monkeypatch.delenv(distributed.BACKEND_ENV, raising=False)
    assert distributed.backend("cuda", "linux") == "nccl"
    assert distributed.backend("cuda", "win32") == "gloo"
    assert distributed.backend("cpu", "linux") == "gloo"
    monkeypatch.setenv(distributed.BACKEND_ENV, "gloo")
    assert distributed.backend("cuda", "linux") == "gloo"


def test_p2p_is_disabled_for_geforce_cards_without_peer_access():
    no_peer, peer = (lambda i, j: False), (lambda i, j: True)
    assert distributed.p2p_unusable(["NVIDIA GeForce RTX 4090"] * 2, no_peer)
    assert not distributed.p2p_unusable(["NVIDIA GeForce RTX 3090"] * 2, peer)
    assert not distributed.p2p_unusable(["NVIDIA H100 80GB HBM3"] * 2, no_peer)
    assert not distributed.p2p_unusable(["NVIDIA GeForce RTX 4090"], no_peer)


# ---- NVML reads the run's GPU ------------------------------------------------------------------------------
class FakeNvml:
    """Two GPUs in NVML's (PCI) order; CUDA sees them the other way round."""

    def __init__(self):
        self.devices = [SimpleNamespace(domain=0, bus=0x17, device=0, uuid="GPU-aaaa"),
                        SimpleNamespace(domain=0, bus=0x65, device=0, uuid="GPU-bbbb")]

    def nvmlDeviceGetCount(self):
        return len(self.devices)

    def nvmlDeviceGetHandleByIndex(self, i):
        return self.devices[i]

    def nvmlDeviceGetPciInfo(self, handle):
        return handle

    def nvmlDeviceGetUUID(self, handle):
        return handle.uuid.encode()


def test_nvml_finds_the_cuda_device_by_pci_address_else_by_uuid(monkeypatch):
    from core.train.system_metrics import nvml_handle

    nvml = FakeNvml()
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda i: SimpleNamespace(
        pci_domain_id=0, pci_bus_id=0x65, pci_device_id=0, uuid="cccc"))
    assert nvml_handle(nvml, 0) is nvml.devices[1]
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda i: SimpleNamespace(uuid="bbbb"))
    assert nvml_handle(nvml, 0) is nvml.devices[1]
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda i: SimpleNamespace(uuid="dddd"))
    assert nvml_handle(nvml, 0) is None  # no match: no gpu_util rather than another GPU's

"""System metrics: process memory and CPU (and GPU memory on CUDA) logged as `system/*` metrics at the log
interval, and the Config pane's memory estimate held against the peak a real run measures."""
from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest
import torch

from core.train.system_metrics import SystemMetrics, peak_rss_bytes, rss_bytes
from tests.fixtures.train import REPO, read_events, subprocess_env, train_config


def test_a_sample_has_memory_and_the_cpu_share_since_the_previous_one():
    probe = SystemMetrics(torch.device("cpu"))
    end = time.process_time() + 0.2
    while time.process_time() < end:  # 0.2 s of CPU on this thread
        pass
    sample = probe.sample()
    assert 0 < sample["system/rss_gb"] <= sample["system/rss_peak_gb"]
    assert sample["system/rss_gb"] == pytest.approx(rss_bytes() / 1e9, rel=0.05)
    assert 0 < sample["system/cpu_percent"] <= 100 * (torch.get_num_threads() + 4)
    assert not any(k.startswith("system/gpu") for k in sample)  # CPU run: no GPU keys, not zeros


def test_an_interval_too_short_to_measure_leaves_cpu_out():
    probe = SystemMetrics(torch.device("cpu"))
    assert "system/cpu_percent" not in probe.sample()  # sampled at once: no interval yet
    assert peak_rss_bytes() > 0 and rss_bytes() > 0


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_samples_allocated_and_peak_gpu_memory():
    device = torch.device("cuda", 0)
    torch.cuda.reset_peak_memory_stats(device)
    x = torch.empty(64 * 2**20, dtype=torch.uint8, device=device)  # 64 MiB
    sample = SystemMetrics(device).sample()
    assert sample["system/gpu_mem_gb"] >= 0.064 and sample["system/gpu_peak_gb"] >= sample["system/gpu_mem_gb"]
    del x


def _baseline_rss() -> float:
    """RSS of a process that has imported what the trainer imports, before it builds anything (bytes)."""
    code = ("import torch, core.train.engine, core.model, core.data; "
            "from core.train.system_metrics import rss_bytes; print(rss_bytes())")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=subprocess_env(), capture_output=True,
                         text=True, check=True)
    return float(out.stdout.split()[-1])


@pytest.mark.slow
def test_a_run_logs_system_metrics_and_the_memory_estimate_is_within_its_measured_error(
        train_data, tiny_tokenizer_dir, tmp_path):
    from core.train.plan import estimate_memory

    # big enough that training memory, not the interpreter, is what the peak measures
    cfg = train_config(tmp_path / "run", tiny_tokenizer_dir, [train_data["pretrain"]], max_steps=6, batch_size=32,
                       log_every=2, **{"data.seq_len": 256})
    config_file = tmp_path / "config.json"
    config_file.write_text(cfg.model_dump_json())
    subprocess.run([sys.executable, "-m", "core.train", "--config", str(config_file)], cwd=REPO,
                   env=subprocess_env(), check=True, capture_output=True)
    metrics = [e["metrics"] for e in read_events(tmp_path / "run") if e["type"] == "metric"]
    assert [sorted(k for k in m if k.startswith("system/")) for m in metrics[1:]] == \
        [["system/cpu_percent", "system/rss_gb", "system/rss_peak_gb"]] * (len(metrics) - 1)
    measured = metrics[-1]["system/rss_peak_gb"] * 1e9 - _baseline_rss()
    config = json.loads(config_file.read_text())
    params = sum(p.numel() for p in _model(config).parameters())
    estimate = estimate_memory(config, params)["total"]
    error = estimate / measured - 1
    print(f"memory estimate {estimate / 1e6:.1f} MB, measured peak growth {measured / 1e6:.1f} MB, "
          f"error {error:+.0%}")
    assert -0.7 < error < 0.3  # docs/studio.md, "Time and memory before Start", states the measured error


def _model(config: dict):
    from core.config import get_preset
    from core.config.model import ModelConfig
    from core.model import MiniMindForCausalLM
    from core.tokenizer import MiniMindTokenizer

    preset = config["model"]
    preset = get_preset(preset).model_dump() if isinstance(preset, str) else preset
    model = dict(preset, vocab_size=MiniMindTokenizer.load(config["data"]["tokenizer"]).vocab_size)
    config["model"] = model
    with torch.device("meta"):
        return MiniMindForCausalLM(ModelConfig.model_validate(model))


def test_the_peak_is_the_trainers_own_not_the_size_of_the_process_that_started_it():
    """Linux keeps ru_maxrss across exec: a child started by a 600 MB process read 600 MB as its own peak (the
    studio starts trainers; so does this test runner). VmHWM belongs to the new process alone."""
    code = "from core.train.system_metrics import peak_rss_bytes; print(peak_rss_bytes())"
    big = bytearray(600 * 10**6)
    big[::4096] = b"\x01" * len(big[::4096])  # resident, not just reserved
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=subprocess_env(), capture_output=True,
                         text=True, check=True)
    del big
    assert int(out.stdout.split()[-1]) < 300 * 10**6

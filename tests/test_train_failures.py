"""What each way a run can fail or be stopped becomes: its run_finished status, message and exit code
(core/train/failures.py). Real exceptions of each kind; the end-to-end runs are in test_train_engine.py and
test_fault_tolerance.py."""
from __future__ import annotations

from pathlib import Path

import torch

from core.data import DataError
from core.preparation import PreparationStopped
from core.train.checkpoint import CheckpointError
from core.train.failures import EXIT_FAILED, EXIT_NONFINITE, EXIT_OK, NonFiniteLoss, RunStopped, classify

RUN = Path("runs/r1")


def test_a_stop_before_the_first_step_ends_stopped_with_how_to_resume():
    ending = classify(RunStopped("SIGTERM"), 0, RUN, 1)
    assert (ending.status, ending.exit_code) == ("stopped", EXIT_OK)
    assert ending.message == f"stopped by signal during set-up, before the first step; resume with --resume {RUN}"
    prep = classify(PreparationStopped(), 0, None, 1)
    assert prep.message == "stopped by signal while preparing data; the finished part of the token cache is kept"


def test_a_non_finite_loss_ends_failed_with_exit_3_at_its_own_step():
    ending = classify(NonFiniteLoss(7, "loss is nan at step 7"), 6, RUN, 1)
    assert (ending.status, ending.exit_code, ending.step, ending.message) == ("failed", EXIT_NONFINITE, 7,
                                                                             "loss is nan at step 7")


def test_config_data_and_checkpoint_errors_keep_their_own_message_without_a_traceback():
    for exc in (ValueError("data.files: x.jsonl does not exist"), DataError("x.jsonl", 3, "text", "missing"),
                CheckpointError("step-000004: missing"), FileNotFoundError("nope")):
        ending = classify(exc, 3, RUN, 1)
        assert (ending.status, ending.exit_code, ending.message, ending.unexpected) == \
            ("failed", EXIT_FAILED, str(exc), False)


def test_out_of_memory_names_the_device_and_what_to_lower():
    exc = torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB (GPU 0; 79.1 GiB total)")
    ending = classify(exc, 4, RUN, 1, device=torch.device("cuda", 0))
    assert (ending.status, ending.exit_code) == ("failed", EXIT_FAILED)
    assert ending.message.startswith("out of memory on cuda:0 at step 5 (CUDA out of memory. Tried to allocate")
    assert "lower batch_size" in ending.message and "gradient_checkpointing" in ending.message
    assert ending.message.endswith(f"resume with --resume {RUN}")
    assert ending.unexpected  # a rank other than 0 reports it itself


def test_a_lost_peer_of_a_multi_process_run_says_to_resume_and_a_bug_says_what_it_is():
    lost = classify(RuntimeError("Connection reset by peer"), 2, RUN, 2)
    assert lost.message.startswith("a rank or node of this 2-process run was lost (RuntimeError: Connection reset")
    assert lost.message.endswith(f"with --resume {RUN}") and not lost.unexpected
    bug = classify(KeyError("logits"), 2, RUN, 1)
    assert (bug.message, bug.unexpected) == ("KeyError: 'logits'", True)

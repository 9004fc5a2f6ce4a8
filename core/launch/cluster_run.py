"""A run on a cluster target, end to end: its folder's config.json and launch file, submission, the job record.

The studio's RunManager and ``minimind train --target`` both go through here, so a run submitted from either
looks the same on disk: ``config.json`` (``run_dir`` as the nodes see it), the launch file, ``launch.json``.
"""
from __future__ import annotations

import json
from pathlib import Path

from core.launch.launch_file import check_launch_run_dir, remote_run_dir, write_launch_file
from core.launch.scheduler import JobRecord, record_submission, submit, write_job


def prepare_run(target, run_dir: Path, config: dict) -> dict:
    """Write config.json (its run_dir the folder as the nodes see it) and an unsubmitted job record;
    LaunchValueError, before anything is written, when the folder cannot go into a launch file."""
    check_launch_run_dir(target, run_dir)
    config = {**config, "run_dir": remote_run_dir(target, run_dir)}
    (Path(run_dir) / "config.json").write_text(json.dumps(config, indent=2), encoding="utf-8")
    write_job(run_dir, JobRecord(target.name, target.kind))
    return config


def submit_run(target, run_dir: Path, resume: bool = False) -> JobRecord:
    """(Re)write the launch file (``--resume`` for a resume), submit it, and record the job id."""
    launch_file = write_launch_file(target, Path(run_dir), resume=resume)
    job_id = submit(target, launch_file)
    return record_submission(Path(run_dir), target, launch_file, job_id)

"""What may go into a launch file: every value a Slurm script or SkyPilot task carries from a config or a target.

A launch file is run by a shell on the cluster. A newline in a value starts a new line: after ``#SBATCH`` or
``#`` that line is a shell command, and in the YAML it is a new key (``setup: curl … | sh``); ``shlex.quote``
stops neither. A run folder comes from a training config (perhaps downloaded), so it may hold anything. Each
value is therefore held to a safe set here, before a launch file is written, and refused with the field named.
Values that reach a scheduler's command line (``scancel``, ``sky cancel``) must not read as an option.
"""
from __future__ import annotations

import re

NAME_CHARS = "letters, digits and _ . + - (not first)"
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.+-]{0,127}")
# A path as the nodes see it. \w: letters and digits of any script (a home folder may be /home/用户), and _.
PATH_CHARS = "letters, digits, / and _ . + - @ : , ="
PATH = re.compile(r"[\w/.+@:,=-]{1,1024}")
# sbatch option values (partition, time, gres) and SkyPilot resources (A100:8, kubernetes).
WORD_CHARS = "letters, digits and _ . , : = + @ % * / -"
WORD = re.compile(r"[A-Za-z0-9_.,:=+@%*/-]{1,256}")
JOB_ID = re.compile(r"[0-9]{1,20}")  # sbatch --parsable and sky launch both answer a number


class LaunchValueError(ValueError):
    """A value that cannot go into a launch file safely; the message names the field and what to do."""


def refusal(value: str, pattern: re.Pattern, allowed: str) -> str | None:
    """Why ``value`` cannot go into a launch file, or None when it can."""
    if pattern.fullmatch(value):
        return None
    return f"{value!r} cannot go into a launch file (allowed: {allowed})"


def one_line_refusal(value: str) -> str | None:
    """Free text that stays on its line (a torchrun command, an extra #SBATCH option): no control characters,
    no line or paragraph separators (str.isprintable is False for all of them, True for a space)."""
    return None if value.isprintable() else f"{value!r} holds a line break or a control character"


def lines_refusal(value: str) -> str | None:
    """Shell lines (a target's setup): line breaks and tabs are its own, other control characters are not."""
    bad = [line for line in value.split("\n") if not line.replace("\t", " ").isprintable()]
    return f"{bad[0]!r} holds a control character" if bad else None


def ensure(value, problem: str | None):
    """``value``, or LaunchValueError(problem) when there is one (a pydantic validator's way to refuse)."""
    if problem:
        raise LaunchValueError(problem)
    return value


def check(field: str, value: str, pattern: re.Pattern, allowed: str) -> str:
    """``value`` when it matches ``pattern``; LaunchValueError naming ``field`` otherwise."""
    problem = refusal(value, pattern, allowed)
    if problem:
        raise LaunchValueError(f"{field}: {problem}")
    return value


def check_run_folder(name: str, remote_dir: str) -> None:
    """The run folder's name (job name, task name) and its path as the nodes see it (--output, --config)."""
    check("run_dir", name, NAME, f"a folder name of {NAME_CHARS}; rename the run folder")
    check("run_dir", remote_dir, PATH, f"{PATH_CHARS}; choose a run folder whose path holds only these, or set "
                                       "the target's remote_runs_dir")


def check_job_id(job_id, where: str) -> str:
    """A scheduler's job id (digits) before it goes into scancel / sky cancel / squeue: ``-a`` would be an option."""
    if not isinstance(job_id, str) or not JOB_ID.fullmatch(job_id):
        raise LaunchValueError(f"{where}: job_id {job_id!r} is not a job id (digits only); this file was not "
                               "written by MiniMind Studio or was changed since")
    return job_id

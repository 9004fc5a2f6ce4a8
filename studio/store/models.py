"""SQLAlchemy 2 models of the studio database (studio.db in the workspace).

Metrics are the bulk (one row per metric name per logged step); they are written with Core executemany and read
back as numpy arrays, never as ORM objects. Other event types are kept raw in ``Event`` for the detail views.
"""
from __future__ import annotations

from sqlalchemy import Boolean, Float, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

SCHEMA_VERSION = 1

# Run statuses. "interrupted": the process vanished without run_finished (resumable from its last checkpoint).
ACTIVE_STATUSES = ("queued", "starting", "running", "stopping")
FINAL_STATUSES = ("completed", "stopped", "failed", "interrupted")


class Base(DeclarativeBase):
    pass


class Run(Base):
    __tablename__ = "run"

    id: Mapped[str] = mapped_column(String, primary_key=True)      # = run folder name
    name: Mapped[str] = mapped_column(String, default="")
    method: Mapped[str] = mapped_column(String, default="")
    status: Mapped[str] = mapped_column(String, default="queued")
    status_message: Mapped[str] = mapped_column(Text, default="")  # why queued / failed / interrupted
    config_json: Mapped[str] = mapped_column(Text, default="{}")
    run_dir: Mapped[str] = mapped_column(String, default="")
    parent_run_id: Mapped[str | None] = mapped_column(String, nullable=True)    # resumed or cloned from
    init_checkpoint: Mapped[str | None] = mapped_column(String, nullable=True)  # weights it started from
    created_at: Mapped[float] = mapped_column(Float, default=0.0)
    started_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    finished_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    pid: Mapped[int | None] = mapped_column(Integer, nullable=True)
    pid_start_ticks: Mapped[int | None] = mapped_column(Integer, nullable=True)  # guards against pid reuse
    n_gpus: Mapped[int] = mapped_column(Integer, default=1)
    device: Mapped[str] = mapped_column(String, default="")
    best_loss: Mapped[float | None] = mapped_column(Float, nullable=True)
    last_step: Mapped[int] = mapped_column(Integer, default=0)
    total_steps: Mapped[int | None] = mapped_column(Integer, nullable=True)
    resumed_from: Mapped[int | None] = mapped_column(Integer, nullable=True)  # step of the latest run_started
    last_event_time: Mapped[float | None] = mapped_column(Float, nullable=True)
    events_offset: Mapped[int] = mapped_column(Integer, default=0)  # bytes of events.jsonl already stored
    resume_pending: Mapped[bool] = mapped_column(Boolean, default=False)  # queued as a resume (--resume run_dir)


class SweepTrial(Base):
    """A run that is a sweep's trial (`minimind sweep`, core/sweep): read from the `sweep` field of the config its
    run_started carries, so a database rebuilt from the run folders has it again. A table of its own: databases
    made before it existed gain it on open."""

    __tablename__ = "sweep_trial"

    run_id: Mapped[str] = mapped_column(ForeignKey("run.id", ondelete="CASCADE"), primary_key=True)
    sweep_id: Mapped[str] = mapped_column(String, index=True)
    sweep_dir: Mapped[str] = mapped_column(String, default="")  # the sweep folder (study.db, sweep.json)
    trial: Mapped[int] = mapped_column(Integer, default=0)


class Metric(Base):
    __tablename__ = "metric"
    __table_args__ = (Index("ix_metric_run_name_step", "run_id", "name", "step"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    run_id: Mapped[str] = mapped_column(ForeignKey("run.id", ondelete="CASCADE"))
    step: Mapped[int] = mapped_column(Integer)
    name: Mapped[str] = mapped_column(String)
    value: Mapped[float] = mapped_column(Float)
    time: Mapped[float] = mapped_column(Float)


class Event(Base):
    """Raw events other than metrics: run_started, sample, checkpoint, warning, error, run_finished."""

    __tablename__ = "event"
    __table_args__ = (Index("ix_event_run_type_step", "run_id", "type", "step"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    run_id: Mapped[str] = mapped_column(ForeignKey("run.id", ondelete="CASCADE"))
    type: Mapped[str] = mapped_column(String)
    step: Mapped[int] = mapped_column(Integer, default=0)
    time: Mapped[float] = mapped_column(Float, default=0.0)
    payload_json: Mapped[str] = mapped_column(Text)


class Checkpoint(Base):
    __tablename__ = "checkpoint"
    __table_args__ = (UniqueConstraint("run_id", "path"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    run_id: Mapped[str] = mapped_column(ForeignKey("run.id", ondelete="CASCADE"))
    step: Mapped[int] = mapped_column(Integer, default=0)
    path: Mapped[str] = mapped_column(String)  # absolute checkpoint directory
    time: Mapped[float] = mapped_column(Float, default=0.0)


class Export(Base):
    __tablename__ = "export"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    run_id: Mapped[str | None] = mapped_column(String, nullable=True)
    checkpoint_path: Mapped[str] = mapped_column(String, default="")
    format: Mapped[str] = mapped_column(String)  # gguf | hf | ...
    path: Mapped[str] = mapped_column(String)
    created_at: Mapped[float] = mapped_column(Float, default=0.0)
    meta_json: Mapped[str] = mapped_column(Text, default="{}")


class Dataset(Base):
    __tablename__ = "dataset"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String)
    kind: Mapped[str] = mapped_column(String, default="")  # pretrain | sft | dpo | rl | tokenizer
    path: Mapped[str] = mapped_column(String, unique=True)
    records: Mapped[int | None] = mapped_column(Integer, nullable=True)
    tokens: Mapped[int | None] = mapped_column(Integer, nullable=True)
    created_at: Mapped[float] = mapped_column(Float, default=0.0)
    meta_json: Mapped[str] = mapped_column(Text, default="{}")


class TimeEstimate(Base):
    """Pre-flight's wall-time estimate of a config, kept so the run's detail can show it against the real time.
    Keyed by ``studio.store.run_store.time_estimate_key`` of the config (a run knows its config, not the
    pre-flight that preceded it). A table of its own: databases made before it existed gain it on open."""

    __tablename__ = "time_estimate"

    key: Mapped[str] = mapped_column(String, primary_key=True)
    seconds: Mapped[float] = mapped_column(Float)
    meta_json: Mapped[str] = mapped_column(Text, default="{}")  # step seconds, steps, cost, price per hour
    created_at: Mapped[float] = mapped_column(Float, default=0.0)


class EvalResult(Base):
    """One evaluation of a model on a task (Evaluate pane): the latest per (model_path, task) is kept.

    `details_json` holds the per-item details (question, options' scores, the choice, right or wrong; for tool use
    the calls and the answer); `settings_json` what the run used (k-shot, limit, batch size, n-gram...)."""

    __tablename__ = "eval_result"
    __table_args__ = (UniqueConstraint("model_path", "task"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    model_path: Mapped[str] = mapped_column(String)  # checkpoint directory or .gguf file
    model_label: Mapped[str] = mapped_column(String, default="")
    run_id: Mapped[str | None] = mapped_column(String, nullable=True)
    task: Mapped[str] = mapped_column(String)        # built-in set, benchmark file, or "tool-use[:cases.jsonl]"
    kind: Mapped[str] = mapped_column(String, default="bench")  # bench | tool-use
    accuracy: Mapped[float] = mapped_column(Float)
    ci_low: Mapped[float | None] = mapped_column(Float, nullable=True)   # 95 % interval
    ci_high: Mapped[float | None] = mapped_column(Float, nullable=True)
    contamination: Mapped[float | None] = mapped_column(Float, nullable=True)  # share of items; None: unchecked
    flagged: Mapped[bool] = mapped_column(Boolean, default=False)            # contamination over the threshold
    n: Mapped[int] = mapped_column(Integer, default=0)
    seconds: Mapped[float] = mapped_column(Float, default=0.0)
    settings_json: Mapped[str] = mapped_column(Text, default="{}")
    details_json: Mapped[str] = mapped_column(Text, default="[]")
    created_at: Mapped[float] = mapped_column(Float, default=0.0)

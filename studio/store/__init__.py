"""The studio's SQLite store (SQLAlchemy 2): runs, metrics, events, checkpoints, exports, datasets."""
from studio.store.models import ACTIVE_STATUSES, FINAL_STATUSES, Checkpoint, Dataset, Event, Export, Metric, Run
from studio.store.recovery import import_run_dir, mark_dead, open_store, reimport_runs
from studio.store.run_store import RunStore

__all__ = ["ACTIVE_STATUSES", "FINAL_STATUSES", "Checkpoint", "Dataset", "Event", "Export", "Metric", "Run",
           "RunStore", "import_run_dir", "mark_dead", "open_store", "reimport_runs"]

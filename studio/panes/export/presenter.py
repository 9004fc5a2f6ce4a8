"""Logic of the Export pane: GGUF (with core's llama.cpp parity check) and Hugging Face exports of a checkpoint.

`core.export.export_gguf` already runs the llama.cpp load in a child process (a bad file may abort llama.cpp,
which must not take the studio down), so here the export only needs a worker thread.
"""
from __future__ import annotations

import json
from pathlib import Path

from PySide6.QtCore import QObject, Signal

from core.export.types import GGUF_TYPES
from studio.threads import Task
from studio.store.model_sources import ModelSource, list_checkpoints

TYPE_COLUMNS = ("Type", "Size on disk", "Perplexity vs f32", "Top-1 vs f32", "Mean KL vs f32", "Parity")


def quality_cells(quality: dict | None) -> tuple[str, str, str]:
    """(perplexity change, top-1 agreement, mean KL) as the types table shows them."""
    if not quality:
        return ("", "", "")
    return (f"{quality['perplexity_change']:+.2%}", f"{quality['top1_agreement']:.1%}",
            f"{quality['mean_kl']:.2e}")


def type_row(name: str, path: Path) -> tuple[str, ...]:
    """One row of the types table: what the export of type `name` at `path` measured (empty when not made yet)."""
    if not path.is_file():
        return (name, "not exported", "", "", "", "")
    size = f"{path.stat().st_size / 1e6:.2f} MB"
    parity = read_parity(path)
    if name == "f32":
        cells = ("reference", "reference", "reference")
    else:
        cells = quality_cells(parity.get("quality"))
    verdict = "" if not parity else ("PASS" if parity.get("passed") else "FAIL")
    return (name, size, *cells, verdict)


def read_parity(gguf_file: Path) -> dict:
    """The parity report the export wrote beside the file (core.export.parity.parity_path), or {}."""
    try:
        return json.loads(Path(gguf_file).with_suffix(".parity.json").read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return {}


def parity_lines(report: dict | None) -> list[tuple[str, str, bool | None]]:
    """(label, value, ok) rows for the parity report; ok None for plain information."""
    if not report:
        return [("Parity", "not checked", None)]
    rows = [("Result", "PASS" if report.get("passed") else "FAIL", bool(report.get("passed")))]
    if "max_abs_logit_diff" in report:
        rows.append(("max |Δlogit|", f"{report['max_abs_logit_diff']:.3g} of a {report['logit_range']:.3g} "
                     f"range ({report['rel_logit_diff']:.2e})", None))
    if "top1_agreement" in report:
        ok = report["top1_agreement"] >= report.get("min_agreement", 0)
        rows.append(("Greedy agreement", f"{report['top1_agreement']:.1%} (needs ≥ "
                     f"{report.get('min_agreement', 0):.0%})", ok))
    if "greedy_identical" in report:
        first = report.get("greedy_first_divergence")
        rows.append(("Greedy continuation", "identical" if report["greedy_identical"] else
                     f"diverges at token {first}" + (" (a near-tie)" if report.get("greedy_divergence_is_tie")
                                                     else ""), report["greedy_identical"] or None))
    quality = report.get("quality")
    if quality:
        ppl, top1, kl = quality_cells(quality)
        rows.append(("Perplexity vs f32", f"{quality['perplexity_f32']:.4g} → {quality['perplexity']:.4g} ({ppl})",
                     None))
        rows.append(("Top-1 vs f32", f"{top1} of {quality['n_tokens']} held-out tokens", None))
        rows.append(("Mean KL vs f32", f"{kl} nats", None))
        rows.append(("Held-out text", quality.get("heldout", ""), None))
    if "tokenizer_match" in report:
        rows.append(("Tokenizer match", "yes" if report["tokenizer_match"] else "NO", report["tokenizer_match"]))
    for problem in report.get("problems", []):
        rows.append(("Problem", problem, False))
    return rows


class ExportPresenter(QObject):
    sourcesChanged = Signal(list)
    progress = Signal(object, object, str)
    finished = Signal(object)     # {"format", "path", "report", "parity", "error"}
    busyChanged = Signal(bool)

    def __init__(self, context, parent: QObject | None = None):
        super().__init__(parent)
        self.context = context
        self.sources: list[ModelSource] = []
        self.last: dict | None = None
        self._task: Task | None = None

    def refresh_sources(self) -> list[ModelSource]:
        """Re-list the checkpoints (also when runs or checkpoints change: MainWindow._connect_pane)."""
        self.sources = list_checkpoints(self.context)
        self.sourcesChanged.emit(self.sources)
        return self.sources

    def default_output(self, checkpoint: str, fmt: str) -> Path:
        ck = Path(checkpoint)
        stem = f"{ck.parent.parent.name}-{ck.name}" if ck.parent.name == "checkpoints" else ck.name
        return self.context.workspace.exports_dir / (f"{stem}-{fmt}.gguf" if fmt in GGUF_TYPES else f"{stem}-hf")

    def type_rows(self, checkpoint: str | None) -> list[tuple[str, ...]]:
        """Every GGUF type with the size and quality of this checkpoint's export of it (TYPE_COLUMNS)."""
        if not checkpoint:
            return [(name, "", "", "", "", "") for name in GGUF_TYPES]
        return [type_row(name, self.default_output(checkpoint, name)) for name in GGUF_TYPES]

    @property
    def busy(self) -> bool:
        return self._task is not None and self._task.is_running()

    def export_gguf(self, checkpoint: str, qtype: str = "f32", out: str | Path | None = None) -> Task | None:
        out = Path(out) if out else self.default_output(checkpoint, qtype)
        return self._start(_gguf_job, checkpoint, qtype, out)

    def export_hf(self, checkpoint: str, dtype: str = "float32", out: str | Path | None = None) -> Task | None:
        out = Path(out) if out else self.default_output(checkpoint, "hf")
        return self._start(_hf_job, checkpoint, dtype, out)

    def _start(self, job, *args) -> Task | None:
        if self.busy:
            return None
        self._task = Task(job, *args, parent=self)
        self._task.progress.connect(self.progress)
        self._task.succeeded.connect(self._done)
        self._task.failed.connect(lambda msg: self._done({"error": msg}))
        self.busyChanged.emit(True)
        return self._task.start()

    def _done(self, result: dict) -> None:
        self.last = result
        if result.get("path") and not result.get("error"):
            self._record(result)
        self.busyChanged.emit(False)
        self.finished.emit(result)

    def _record(self, result: dict) -> None:
        """Remember the export in the store and tell the other panes (Chat lists GGUFs from there)."""
        run_id = next((s.run_id for s in self.sources if s.path == result.get("checkpoint")), None)
        try:
            self.context.store.add_export(result["path"], result["format"], run_id=run_id,
                                          checkpoint_path=result.get("checkpoint", ""),
                                          meta={"parity": result.get("parity")})
        except Exception as exc:  # the file exists either way; say why the list may miss it
            result["warning"] = f"not recorded in the run store: {exc}"
        self.context.exportAdded.emit(result["path"])

    def shutdown(self) -> None:
        if self._task is not None:
            self._task.cancel_and_wait(60_000)


def _gguf_job(checkpoint: str, qtype: str, out: Path, progress, cancelled) -> dict:
    import core.export as ce
    from core.export.parity import ParityError

    try:
        report = ce.export_gguf(checkpoint, out, qtype, progress=progress)
    except ParityError as exc:  # the file was written but llama.cpp disagrees: show the figures, keep it out
        return {"format": "gguf", "checkpoint": checkpoint, "file": str(out), "parity": exc.report,
                "error": str(exc)}
    except (ce.UnsupportedExport, ce.QuantizeError) as exc:
        return {"format": "gguf", "checkpoint": checkpoint, "error": str(exc)}
    return {"format": "gguf", "checkpoint": checkpoint, "path": str(out), "report": report,
            "parity": report.get("parity")}


def _hf_job(checkpoint: str, dtype: str, out: Path, progress, cancelled) -> dict:
    import core.export as ce

    progress(0, 0, "writing the Hugging Face folder")
    report = ce.export_hf(checkpoint, out, dtype)
    return {"format": "hf", "checkpoint": checkpoint, "path": str(out), "report": report}

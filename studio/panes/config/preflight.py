"""Pre-flight check before Start (worker thread): lint the data for the method, render one record through the
chat template with the loss-carrying tokens highlighted, measure truncation on a sample, compare the memory
estimate with the device's free memory. Masks come from core.data (`ChatMasker`), never re-derived here."""
from __future__ import annotations

import html
from itertools import islice
from pathlib import Path

import numpy as np

from core.tokenizer.special_tokens import (THINK_END, THINK_START, TOOL_CALL_END, TOOL_CALL_START,
                                           TOOL_RESPONSE_END, TOOL_RESPONSE_START)
from studio.widgets.theme import COLORS

LINT_RECORDS = 5000      # records checked per file (the whole file for small ones)
TRUNCATION_SAMPLE = 500  # records tokenized to measure truncation


def data_kind(config: dict) -> str:
    """The record kind the run reads (core.train.plan.resolve_data_kind)."""
    from core.train.plan import resolve_data_kind

    return resolve_data_kind(config.get("method", "pretrain"), (config.get("data") or {}).get("files") or [])


def run_plan(config: dict):
    """The run plan (core/train/plan.py) of the form's config on this machine: device, precision, compile; None
    while the form does not validate (its field errors say why) or the asked-for device is not here."""
    from core.config.train import TrainConfig
    from core.train.plan import plan_run

    try:
        cfg = TrainConfig.model_validate({k: v for k, v in config.items() if k in TrainConfig.model_fields})
        return plan_run(cfg, world_size=max(1, int(config.get("n_gpus") or 1)))
    except Exception:  # e.g. cuda asked for on a machine without it: the trainer will say so
        return None


def find_tokenizer(config: dict, workspace=None):
    """The tokenizer the run will use: data.tokenizer, else the init checkpoint's, else the newest trained one."""
    from core.tokenizer import MiniMindTokenizer

    candidates = []
    if (config.get("data") or {}).get("tokenizer"):
        candidates.append(Path(config["data"]["tokenizer"]))
    if config.get("init"):
        try:
            from core.model.io import resolve_checkpoint
            candidates.append(resolve_checkpoint(config["init"]) / "tokenizer")
        except Exception:
            pass
    if workspace is not None and workspace.tokenizers_dir.is_dir():
        candidates += sorted((p.parent for p in workspace.tokenizers_dir.glob("*/tokenizer.json")),
                             key=lambda p: -p.stat().st_mtime)
    for c in candidates:
        if (c / "tokenizer.json").is_file():
            return MiniMindTokenizer.load(c), str(c)
    return None, None


def record_tokens(rec: dict, kind: str, tok) -> tuple[list[int], np.ndarray]:
    """(ids, loss mask) of one record exactly as the trainer builds them."""
    from core.data.datasets import ChatMasker

    if kind in ("pretrain", "text"):
        ids = [tok.bos_id] + tok.encode(rec["text"]) + [tok.eos_id]
        mask = np.ones(len(ids), dtype=bool)
        mask[0] = False  # BOS is never a target (labels are shifted inside the model)
        return ids, mask
    if kind == "rl":
        ids = tok.encode(tok.apply_chat_template(rec["conversations"], add_generation_prompt=True))
        return ids, np.zeros(len(ids), dtype=bool)  # the prompt carries no loss; rollouts do
    msgs = rec["chosen"] if kind == "dpo" else rec["conversations"]
    ids = tok.encode(tok.apply_chat_template(msgs))
    return ids, ChatMasker(tok).labels(np.asarray(ids)) != -100


def tokens_html(tok, ids: list[int], mask: np.ndarray, max_len: int | None = None) -> str:
    """One span per token; loss tokens coloured, tokens past max_len struck through. Qt's rich text has no
    per-span borders, so neighbouring tokens alternate between two shades to show where each one ends.
    Chat records are cut into labelled blocks: each turn, and inside it reasoning, tool calls and tool responses."""
    spans = []
    for i, (t, loss) in enumerate(zip(ids, mask)):
        text = tok.decode([t])
        shown = html.escape(text).replace("\n", "↵<br>").replace(" ", "&nbsp;") or "∅"
        shade = (COLORS["loss"], COLORS["loss_alt"]) if loss else (COLORS["panel"], COLORS["system"])
        style = f"background:{shade[i % 2]};" + ("" if loss else f"color:{COLORS['muted']};")
        if max_len is not None and i >= max_len:
            style += "text-decoration:line-through;"
        spans.append(f'<span data-loss="{int(bool(loss))}" style="{style}">'
                     f'{shown}</span>')
    blocks = []
    for label, start, end in token_blocks(tok, ids):
        head = (f'<span style="color:{COLORS["muted"]}; font-size:8pt">{html.escape(label)}</span><br>'
                if label else "")
        blocks.append(f"<div style='margin:2px 0 6px 0'>{head}{''.join(spans[start:end])}</div>")
    return "<div style='font-family:monospace; line-height:160%'>" + "".join(blocks) + "</div>"


# tag -> (block label, roles whose turns it opens a block in); the system turn's tools block also spells
# <tool_call>, as an instruction, and stays part of the system block.
_INNER_BLOCKS = {THINK_START: ("reasoning", ("assistant",)), TOOL_CALL_START: ("tool call", ("assistant",)),
                 TOOL_RESPONSE_START: ("tool response", ("user",))}
_BLOCK_ENDS = (THINK_END, TOOL_CALL_END, TOOL_RESPONSE_END)


def token_blocks(tok, ids: list[int]) -> list[tuple[str, int, int]]:
    """(label, start, end) runs of `ids`: a block per chat turn (labelled with its role), split at the think and
    tool tags. Tokenizers that spell the tags in several tokens (MiniMind v2) get one block per turn."""
    by_id = {tok.token_to_id(tag): tag for tag in list(_INNER_BLOCKS) + list(_BLOCK_ENDS)}
    by_id.pop(None, None)
    labels, role, inner = [], "", None
    for i, t in enumerate(ids):
        tag = by_id.get(t)
        if t == tok.bos_id:
            role, inner = tok.decode(ids[i + 1:i + 6]).split("\n")[0].strip(), None
            role = role if role in ("system", "user", "assistant") else ""  # a pretrain document's BOS
        elif tag in _INNER_BLOCKS and role in _INNER_BLOCKS[tag][1]:
            inner = _INNER_BLOCKS[tag][0]
        labels.append(inner or role)
        if tag in _BLOCK_ENDS:
            inner = None
    blocks: list[tuple[str, int, int]] = []
    for i, label in enumerate(labels):
        if blocks and blocks[-1][0] == label and (label == "" or ids[i] != tok.bos_id):
            blocks[-1] = (label, blocks[-1][1], i + 1)
        else:
            blocks.append((label, i, i + 1))
    return blocks


def run_preflight(config: dict, estimate: dict, progress, cancelled, workspace=None,
                  price_per_hour: float | None = None) -> dict:
    from core.data.formats import using_mappings
    from core.data.records import DataReport, iter_records

    kind = data_kind(config)
    files = list((config.get("data") or {}).get("files") or [])
    problems: list[str] = []
    result: dict = {"kind": kind, "files": files, "problems": problems, "lint": []}
    probe = DeviceProbe(config)
    if not files:
        problems.append("data.files: no training files; add at least one")
    first_record = None
    mappings = (config.get("data") or {}).get("mappings") or {}
    for f in files:
        report = DataReport(max_errors=10)
        try:  # read as the run will: with the config's recorded mappings, else each file's sidecar or detection
            with using_mappings(mappings):
                for rec, _line, _pos in islice(iter_records(f, kind, on_error="skip", report=report), LINT_RECORDS):
                    first_record = first_record or rec
                    if cancelled():
                        return result
        except Exception as exc:  # DataError for a missing file, ValueError for a bad kind
            problems.append(str(exc))
            continue
        summary = report.summary() + (f" (the first {LINT_RECORDS:,} records checked)"
                                      if report.records >= LINT_RECORDS else "")
        result["lint"].append({"file": f, **report.to_dict(), "summary": summary})
        problems += [str(e) for e in report.errors]
        progress(len(result["lint"]), len(files), f"checked {f}")
    tok, tok_path = find_tokenizer(config, workspace)
    result["tokenizer"] = tok_path
    max_len = int((config.get("data") or {}).get("seq_len" if kind == "pretrain" else "max_len", 512))
    if tok is None:
        problems.append("data.tokenizer: no tokenizer found; set data.tokenizer, pick a starting checkpoint, "
                        "or train one in the Datasets pane")
    else:
        model = config.get("model") if isinstance(config.get("model"), dict) else {}
        if not config.get("init") and model.get("vocab_size") not in (None, tok.vocab_size):
            # core.train.recipe.build_model sizes a fresh model's embedding to the tokenizer
            result.setdefault("notes", []).append(
                f"model.vocab_size {model['vocab_size']} will be set to the tokenizer's {tok.vocab_size} "
                "by the trainer; the estimate above uses the form's value")
    if tok is not None and first_record is not None:
        ids, mask = record_tokens(first_record, kind, tok)
        result.update(record_ids=ids, loss_mask=mask.tolist(), record_html=tokens_html(tok, ids, mask, max_len),
                      loss_tokens=int(mask.sum()), record_tokens=len(ids))
        result["truncation"] = truncation(files, kind, tok, max_len, cancelled)
        try:  # a calibration that fails (out of memory, a device that vanished) must not hide the rest
            result["time"] = time_estimate(config, estimate, kind, tok, workspace, cancelled, price_per_hour, probe)
        except Exception as exc:
            result["time"] = {"error": f"not estimated: {type(exc).__name__}: {exc}"}
    result["defaults"] = default_origins(config)
    result.setdefault("notes", []).extend(f"{k}: {w}" for k, w in result["defaults"]["warnings"].items())
    plan = run_plan(config)
    result["compile"] = compile_choice(config, plan)
    if plan is not None and (slow := precision_note(config, plan)):
        result.setdefault("notes", []).append(slow)
    # one line in the pane: how the run will compute (the pane shows `precision`)
    result["precision"] = "; ".join(x for x in (precision_choice(plan), result["compile"]) if x) or None
    if cancelled():
        return result
    check_device(config, estimate, probe, cancelled, result)
    result["ok"] = not problems
    return result


def precision_note(config: dict, plan) -> str | None:
    """core.precision.precision_warning for the form's precision on the plan's device."""
    import torch

    from core.precision import precision_warning

    return precision_warning(config.get("precision", "auto"), torch.device(plan.device))


def default_origins(config: dict) -> dict:
    """{"sources": {field: (value, origin)}, "warnings": {field: text}}: where each setting the method gives a
    default for comes from (the method's default, scaled to the model or the parent run, or you) and which values
    sit far from it (core.methods)."""
    from core.methods import default_sources, default_warnings
    from core.config.paths import get_path

    try:
        sources = default_sources(config)
        warnings = default_warnings(config)
    except Exception as exc:  # an unknown method or a half-typed form: the field errors say what
        return {"sources": {}, "warnings": {}, "error": str(exc)}
    return {"sources": {k: (get_path(config, tuple(k.split(".")), None), v) for k, v in sources.items()},
            "warnings": warnings}


class DeviceProbe:
    """Pre-flight's view of the device, from a child process (core.train.calibration.measure_in_child) that also
    calibrates when asked: the studio itself never initialises CUDA or keeps a model. CPU-only set-ups need no
    child for the facts."""

    def __init__(self, config: dict) -> None:
        self.device = config.get("device") or "auto"
        self.facts: dict | None = None

    def _child(self, measure: dict | None, cancelled):
        from core.train.calibration import measure_in_child
        from studio.worker.command import trainer_base_command, trainer_environment

        answer = measure_in_child(trainer_base_command(), self.device, measure, cancelled, env=trainer_environment())
        if answer is not None:
            self.facts = answer["device"]
        return answer

    def measure(self, model: dict, batch: int, seq: int, device: str, precision: str, cancelled) -> float | None:
        """core.train.calibration.step_seconds's `measure`, in the child."""
        answer = self._child({"model": model, "batch": batch, "seq": seq, "precision": precision}, cancelled)
        return None if answer is None else answer["step_seconds"]

    def device_facts(self, cancelled) -> dict | None:
        """{"type", "count", "free", ...} (core.train.calibration.device_facts); None when cancelled."""
        from studio.device_info import cpu_info, gpu_possible

        if self.facts is None and (self.device == "cpu" or (self.device == "auto" and not gpu_possible())):
            free = cpu_info().memory_free_gb
            self.facts = {"type": "cpu", "count": 0, "free": free * 1e9 if free is not None else None}
        if self.facts is None:
            self._child(None, cancelled)
        return self.facts


def check_device(config: dict, estimate: dict, probe: DeviceProbe, cancelled, result: dict) -> None:
    """The GPU count and the memory the run needs against what the device offers; problems go into `result`."""
    from core.train.distributed import too_many_ranks

    try:
        facts = probe.device_facts(cancelled) or {}
    except Exception as exc:  # the child failed: a device that is not there (device: cuda without CUDA), a driver
        result["problems"].append(f"device: {exc}")
        facts = {}
    n_gpus = int(config.get("n_gpus") or 1)
    if facts.get("type") == "cuda":
        shortage = too_many_ranks(n_gpus, facts["count"])
        if shortage:
            result["problems"].append(shortage)
    free, need = facts.get("free"), estimate.get("total")
    if need and facts.get("type") == "cuda":  # the child's free figure already lacks one CUDA context
        need -= estimate.get("runtime", 0)
    result["memory"] = {"estimate": estimate.get("total"), "free": free}
    if free and need and need > free:
        result["problems"].append(f"memory: the run needs about {need / 1e9:.1f} GB but the device has "
                                  f"{free / 1e9:.1f} GB free; lower batch_size or max_len, or pick a smaller preset")


def truncation(files: list[str], kind: str, tok, max_len: int, cancelled) -> float | None:
    """Share of sampled records longer than max_len (None for pretrain: documents are packed, not cut)."""
    if kind == "pretrain":
        return None
    n = cut = 0
    for rec in _sample_records(files, kind):
        ids, _ = record_tokens(rec, kind, tok)
        n += 1
        cut += len(ids) > max_len
        if cancelled():
            return cut / max(1, n)
    return cut / n if n else None


def precision_choice(plan) -> str | None:
    """The precision the trainer will pick on this machine and why, e.g.
    "bf16 (auto: this CPU has native bf16 (AMX); weights and optimizer stay fp32)"."""
    return None if plan is None else f"{plan.precision} ({plan.precision_reason})"


def compile_choice(config: dict, plan) -> str | None:
    """Whether the trainer will torch.compile the model on this machine and why, e.g.
    "torch.compile off (auto: eager on CPU for runs under 2000 steps (...))"."""
    if plan is None:
        return None
    compile_on, reason = plan.compile_for(int(config["max_steps"]) if config.get("max_steps") else None)
    return f"torch.compile {'on' if compile_on else 'off'} ({reason})"  # the steps are known once data is read


def count_records(path: str) -> int:
    """Lines of a JSONL/text file that are not blank (one record each; unreadable: 0, the lint says why)."""
    try:
        with open(path, "rb") as fh:
            return sum(1 for line in fh if line.strip())
    except OSError:
        return 0


def time_estimate(config: dict, estimate: dict, kind: str, tok, workspace, cancelled,
                  price_per_hour: float | None = None, probe: DeviceProbe | None = None) -> dict:
    """Wall time (and cost at ``price_per_hour``) from a calibration of a few real steps on this machine
    (core/train/calibration.py) in a child process (`probe`), cached in the workspace per machine and settings."""
    from core.train import plan
    from core.train.calibration import CalibrationCache, step_models, step_seconds

    factor = step_models(config.get("method", "pretrain"))
    if factor is None:
        return {"error": "not estimated: this method generates or runs extra models inside each step"}
    if not isinstance(config.get("model"), dict) or "per_gpu_batch" not in estimate:
        return {"error": "not estimated: fix the model fields first"}
    files = list((config.get("data") or {}).get("files") or [])
    sample = [len(record_tokens(rec, kind, tok)[0]) for rec in _sample_records(files, kind)]
    records = sum(count_records(f) for f in files)
    data, batch = config.get("data") or {}, max(1, int(config.get("batch_size", 16)))
    accumulation = max(1, int((config.get("optim") or {}).get("accumulation", 1)))
    batches = plan.estimated_batches(kind, records, sum(sample) / max(1, len(sample)), int(data.get("seq_len", 512)),
                                     batch)
    _, steps = plan.step_counts(batches, accumulation, config.get("max_steps"), int(config.get("epochs", 1)), batch)
    model = dict(config["model"], vocab_size=tok.vocab_size)
    root = workspace.root if workspace is not None else Path.home() / ".cache" / "minimind"
    probe = probe or DeviceProbe(config)
    seconds, cached = step_seconds(CalibrationCache(root / "calibration.json"), model, estimate["per_gpu_batch"],
                                   estimate["seq"], config.get("device", "auto"), config.get("precision", "auto"),
                                   cancelled, measure=probe.measure)
    if seconds is None:
        return {"error": "cancelled"}
    return {**plan.time_estimate(steps, accumulation, seconds, factor, price_per_hour), "cached": cached,
            "records": records}


def _sample_records(files: list[str], kind: str):
    from core.data.records import read_records

    for f in files:
        yield from islice(read_records(f, kind, on_error="skip"), TRUNCATION_SAMPLE // max(1, len(files)))

"""Lineage graph of a workspace: runs as nodes, edges for the weights one run started from (`init` checkpoint of
a parent run) or the run it was cloned from, a resume marked on the run itself, exports and evaluations hanging
off the checkpoint they were made from, and a sweep (`minimind sweep`) above its trials. Plain data from the store; the view (studio/panes/runs/lineage_view.py)
only draws ``LineageGraph`` at the positions ``layout`` gives.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

COLUMN, ROW = 230, 62  # layout grid, scene pixels


@dataclass
class Node:
    id: str                # "run:<run_id>", "export:<n>", "eval:<run_id>", "sweep:<sweep_id>"
    kind: str              # run | export | eval | sweep
    label: str             # first line bold in the view
    detail: str = ""       # second line
    run_id: str | None = None  # the run a click selects (an export's or evaluation's own run)
    status: str = ""


@dataclass
class Edge:
    source: str
    target: str
    kind: str              # init | parent | resumed | export | eval | sweep
    label: str = ""        # the checkpoint it hangs off ("step-000400"), a sweep's trial ("trial 3")


@dataclass
class LineageGraph:
    nodes: dict[str, Node] = field(default_factory=dict)
    edges: list[Edge] = field(default_factory=list)

    def children(self, node_id: str) -> list[str]:
        return [e.target for e in self.edges if e.source == node_id and e.target != node_id]


def _checkpoint_name(path: str | None) -> str:
    return Path(path).name if path else ""


def lineage_graph(store) -> LineageGraph:
    """Every run of the store, its parent edge, resume, exports and the latest evaluation of each run."""
    graph = LineageGraph()
    runs = store.list_runs()[::-1]  # oldest first: parents before their children
    trials = {t.run_id: t for t in store.sweep_trials()}
    for run in runs:
        if run.id in trials:
            _add_sweep_trial(graph, trials, trials[run.id])
        node = graph.nodes[f"run:{run.id}"] = Node(f"run:{run.id}", "run", run.name or run.id,
                                                   f"{run.method} · {run.status} · step {run.last_step or 0}",
                                                   run.id, run.status)
        if run.resumed_from is not None:  # resumed in place: same row and folder, marked on the node
            node.detail += f" · resumed at {run.resumed_from}"
            graph.edges.append(Edge(node.id, node.id, "resumed", f"step {run.resumed_from}"))
    for run in runs:
        if run.parent_run_id and f"run:{run.parent_run_id}" in graph.nodes:
            kind = "init" if run.init_checkpoint else "parent"
            graph.edges.append(Edge(f"run:{run.parent_run_id}", f"run:{run.id}", kind,
                                    _checkpoint_name(run.init_checkpoint) if kind == "init" else "cloned"))
        _add_evaluation(graph, store, run)
    for i, export in enumerate(store.exports()[::-1]):
        if not export.run_id or f"run:{export.run_id}" not in graph.nodes:
            continue
        parity = (json.loads(export.meta_json or "{}") or {}).get("parity") or {}
        verdict = "" if not parity else " · parity ok" if parity.get("passed", parity.get("ok")) else " · parity failed"
        node_id = f"export:{i}"
        graph.nodes[node_id] = Node(node_id, "export", f"{export.format.upper()} {Path(export.path).name}",
                                    f"exported{verdict}", export.run_id)
        graph.edges.append(Edge(f"run:{export.run_id}", node_id, "export",
                                _checkpoint_name(export.checkpoint_path)))
    return graph


def _add_sweep_trial(graph: LineageGraph, trials: dict, trial) -> None:
    """The sweep's node (once, before its first trial, so the trials sit under it) and the edge to this trial."""
    node_id = f"sweep:{trial.sweep_id}"
    if node_id not in graph.nodes:
        count = sum(t.sweep_id == trial.sweep_id for t in trials.values())
        graph.nodes[node_id] = Node(node_id, "sweep", f"sweep {trial.sweep_id}",
                                    f"{count} trial{'s' * (count != 1)} · {Path(trial.sweep_dir).name}")
    graph.edges.append(Edge(node_id, f"run:{trial.run_id}", "sweep", f"trial {trial.trial}"))


def _add_evaluation(graph: LineageGraph, store, run) -> None:
    """The run's latest `eval/*` metrics as one leaf on the checkpoint of that step (if the run evaluated)."""
    names = [n for n in store.metric_names(run.id) if n.startswith("eval/")]
    if not names:
        return
    last = {}
    for name in names:
        steps, values = store.metric_series(run.id, name)
        if steps.size:
            last[name] = (int(steps[-1]), float(values[-1]))
    if not last:
        return
    step = max(s for s, _ in last.values())
    shown = ", ".join(f"{n.removeprefix('eval/')} {v:.3g}" for n, (s, v) in sorted(last.items()) if s == step)
    node_id = f"eval:{run.id}"
    graph.nodes[node_id] = Node(node_id, "eval", "evaluation", shown, run.id)
    graph.edges.append(Edge(f"run:{run.id}", node_id, "eval", f"step-{step:06d}"))


def layout(graph: LineageGraph) -> dict[str, tuple[float, float]]:
    """(x, y) of every node: an indented tree, one node a row, each child one column right of its parent, in the
    order parents were created (so a long chain reads top to bottom like a history). Nodes never overlap."""
    has_parent = {e.target for e in graph.edges if e.source != e.target}
    positions: dict[str, tuple[float, float]] = {}

    def place(node_id: str, depth: int) -> None:
        if node_id in positions:  # a cycle or a second parent: drawn once
            return
        positions[node_id] = (depth * COLUMN, len(positions) * ROW)
        for child in graph.children(node_id):
            place(child, depth + 1)

    for node_id in graph.nodes:
        if node_id not in has_parent:
            place(node_id, 0)
    for node_id in graph.nodes:  # only in a cycle: every node has a parent
        place(node_id, 0)
    return positions

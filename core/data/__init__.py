"""Data pipeline: validated readers, a memory-mapped token cache, packing, SFT/DPO masks, prompts, batching, demo data.

The training engine imports everything it needs from here; the formats are described in docs/data-formats.md.
The readers (`core.data.records`, which also holds the one list of record kinds) import without torch, so the
method registry and the studio can read them; the torch datasets, batching and demo data load on first use.
"""
from core.data.records import KINDS, DataError, DataReport, detect_kind, read_records

_LAZY = {"collate_pad": "batching", "collate_dpo": "batching", "LengthGroupedBatchSampler": "batching",
         "PretrainDataset": "datasets", "SFTDataset": "datasets", "DPODataset": "datasets",
         "PromptDataset": "datasets", "assistant_labels": "datasets", "generate_demo_data": "demo"}

__all__ = ["DataError", "DataReport", "detect_kind", "read_records", "KINDS", *_LAZY]


def __getattr__(name: str):
    # PEP 562: the torch-backed names are imported when first asked for, not with the package
    where = _LAZY.get(name)
    if where == "batching":
        from core.data import batching as module
    elif where == "datasets":
        from core.data import datasets as module
    elif where == "demo":
        from core.data import demo as module
    else:
        raise AttributeError(f"module 'core.data' has no attribute {name!r}")
    value = globals()[name] = getattr(module, name)
    return value

"""Data pipeline: validated readers, a memory-mapped token cache, packing, SFT/DPO masks, prompts, batching, demo data.

The training engine imports everything it needs from here; the formats are described in docs/data-formats.md.
"""
from core.data.records import DataError, DataReport, detect_kind, read_records, KINDS
from core.data.batching import collate_pad, collate_dpo, LengthGroupedBatchSampler
from core.data.datasets import PretrainDataset, SFTDataset, DPODataset, PromptDataset, assistant_labels
from core.data.demo import generate_demo_data

__all__ = ["DataError", "DataReport", "detect_kind", "read_records", "KINDS", "PretrainDataset", "SFTDataset",
           "DPODataset", "PromptDataset", "assistant_labels", "collate_pad", "collate_dpo",
           "LengthGroupedBatchSampler", "generate_demo_data"]

"""Torch datasets over the token cache (first version: signatures; bodies land next)."""
from __future__ import annotations

from torch.utils.data import Dataset


def assistant_labels(ids, header_ids, eos_id, newline_id):
    raise NotImplementedError


class PretrainDataset(Dataset):
    def __init__(self, files, tokenizer, seq_len, cache_dir, on_error="raise", progress=None):
        raise NotImplementedError


class SFTDataset(Dataset):
    def __init__(self, files, tokenizer, max_len, cache_dir, on_error="raise", progress=None):
        raise NotImplementedError


class DPODataset(Dataset):
    def __init__(self, files, tokenizer, max_len, cache_dir, on_error="raise", progress=None):
        raise NotImplementedError


class PromptDataset(Dataset):
    def __init__(self, files, tokenizer, max_prompt_len, on_error="raise"):
        raise NotImplementedError

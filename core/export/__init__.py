"""Export to GGUF (llama.cpp / Ollama / LM Studio) and Hugging Face folders, with a parity check; imports."""
from core.export.gguf import GGUF_TYPES, KQUANTS, QTYPES, export_gguf
from core.export.hf import export_hf
from core.export.imports import ImportCheckpointError, import_checkpoint
from core.export.mapping import UnsupportedExport, choose_architecture
from core.export.parity import ParityError, check_parity
from core.export.quantize import QuantizeError

__all__ = ["GGUF_TYPES", "KQUANTS", "QTYPES", "export_gguf", "export_hf", "import_checkpoint", "check_parity",
           "choose_architecture", "ParityError", "QuantizeError", "UnsupportedExport", "ImportCheckpointError"]

"""The MiniMind decoder (dense and MoE) and checkpoint I/O."""
from core.model.model import CausalLMOutput, MiniMindForCausalLM, MiniMindModel, RMSNorm, rope_inv_freq

__all__ = ["MiniMindForCausalLM", "MiniMindModel", "CausalLMOutput", "RMSNorm", "rope_inv_freq"]

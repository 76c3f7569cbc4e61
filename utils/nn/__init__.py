"""Shared neural-network building blocks: attention dispatch, timestep embeddings, RoPE, AdaLN modulation,
RMS norm, channels-last switching. Every block here is used by a model of the zoo."""
from utils.nn.attention import (BACKENDS, attention, attention_backend, available_attention_backends,
                                check_attention_backend, get_attention_backend, resolve_attention_backend,
                                set_attention_backend)
from utils.nn.embeddings import timestep_embedding
from utils.nn.modulation import ModulationOut, gate, modulate
from utils.nn.norms import RMSNorm, rms_norm
from utils.nn.rope import RotaryEmbedding, apply_rope, grid_ids, rope_1d, rope_nd

__all__ = [
    "BACKENDS", "attention", "attention_backend", "available_attention_backends", "check_attention_backend",
    "get_attention_backend", "resolve_attention_backend", "set_attention_backend",
    "timestep_embedding",
    "ModulationOut", "gate", "modulate",
    "RMSNorm", "rms_norm",
    "RotaryEmbedding", "apply_rope", "grid_ids", "rope_1d", "rope_nd",
]

"""Shared neural-network building blocks: attention dispatch, embeddings, RoPE, modulation, norms."""
from utils.nn.attention import (BACKENDS, attention, attention_backend, available_attention_backends,
                                get_attention_backend, resolve_attention_backend, set_attention_backend)
from utils.nn.embeddings import TimestepMLP, Timesteps, timestep_embedding
from utils.nn.modulation import AdaLNModulation, ModulationOut, gate, modulate
from utils.nn.norms import LayerNorm32, QKNorm, RMSNorm, rms_norm
from utils.nn.rope import RotaryEmbedding, apply_rope, grid_ids, rope_1d, rope_nd

__all__ = [
    "BACKENDS", "attention", "attention_backend", "available_attention_backends", "get_attention_backend",
    "resolve_attention_backend", "set_attention_backend",
    "TimestepMLP", "Timesteps", "timestep_embedding",
    "AdaLNModulation", "ModulationOut", "gate", "modulate",
    "LayerNorm32", "QKNorm", "RMSNorm", "rms_norm",
    "RotaryEmbedding", "apply_rope", "grid_ids", "rope_1d", "rope_nd",
]

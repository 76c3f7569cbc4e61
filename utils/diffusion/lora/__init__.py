"""LoRA for every diffusion pipeline of the zoo: peft layers, the formats of LoRA files from the wild, and
loading, scaling, fusing and saving them. Each model package maps its module names in its `lora.py`; see
docs/training.md."""
from utils.lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(__name__, {
    "LoraComponent": "routes:LoraComponent",
    "Part": "routes:Part",
    "row_blocks": "routes:row_blocks",
    "identity_component": "routes:identity_component",
    "LoraPair": "formats:LoraPair",
    "read_lora_file": "formats:read_lora_file",
    "split_pairs": "formats:split_pairs",
    "write_lora_file": "formats:write_lora_file",
    "load_lora": "loader:load_lora",
    "parse_lora_arg": "loader:parse_lora_arg",
    "save_adapter": "save:save_adapter",
    "adapter_tensors": "save:adapter_tensors",
    "FORMATS": "save:FORMATS",
})

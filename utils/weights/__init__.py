"""Find a weights source and load it safely.

A source is a local file, a local folder, or a hub repo id (`owner/name`, optionally
`owner/name@revision`), with an optional file name inside it. Files load as:

- `.safetensors`: memory-mapped, straight to the requested device and dtype;
- `.bin .pt .pth .ckpt`: `torch.load(weights_only=True)`, which refuses code in the file; a `.ckpt`
  it refuses for naming a class (old Lightning checkpoints hold callback objects) is read again by
  the restricted unpickler below, so its tensors load and its objects stay inert;
- `.pkl` (legacy pickles, e.g. NVlabs networks): `load_legacy_pickle`, a restricted unpickler
  that rebuilds tensors and plain containers and turns every other class into an inert record.

Every failure a user can cause is a `WeightsError` with one line: what, why, what to do. Weights
holding NaN or Inf are refused when they go into a module (`load_into`, `check_finite`).
"""
from utils.weights.files import (CHECKPOINT_SUFFIXES, PICKLE_FILES, SAFETENSORS, TORCH_FILES, cast_state_dict,
                                 flatten_tensors, load_folder_state_dict, load_state_dict, unwrap_state_dict)
from utils.weights.hub import HUB_ID, hub_cache_dir, is_offline, resolve, split_hub_id
from utils.weights.keys import check_finite, check_keys, key_report, load_into
from utils.weights.native import config_from_json, config_to_json, read_safetensors_config, save_native
from utils.weights.pickles import PickledObject, RestrictedUnpickler, load_legacy_pickle, load_torch_zip_restricted

__all__ = ["CHECKPOINT_SUFFIXES", "HUB_ID", "PICKLE_FILES", "SAFETENSORS", "TORCH_FILES", "PickledObject",
           "RestrictedUnpickler", "cast_state_dict", "check_finite", "check_keys", "config_from_json", "config_to_json",
           "flatten_tensors", "hub_cache_dir", "is_offline", "key_report", "load_folder_state_dict", "load_into",
           "load_legacy_pickle", "load_state_dict", "load_torch_zip_restricted", "read_safetensors_config", "resolve",
           "save_native", "split_hub_id", "unwrap_state_dict"]

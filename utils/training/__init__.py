"""What every trainer shares: atomic checkpoints, exact resume, per-step seeding."""
from utils.training.checkpoints import (checkpoint_path, latest_checkpoint, load_checkpoint, prune_checkpoints,
                                        save_checkpoint, write_json)
from utils.training.seeding import capture_rng, epoch_indices, restore_rng, seed_step

__all__ = ["checkpoint_path", "latest_checkpoint", "load_checkpoint", "prune_checkpoints", "save_checkpoint",
           "write_json", "capture_rng", "epoch_indices", "restore_rng", "seed_step"]

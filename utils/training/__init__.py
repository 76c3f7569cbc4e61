"""What every trainer shares: atomic checkpoints, exact resume, per-step seeding, the run folder's rules."""
from utils.training.checkpoints import (checkpoint_path, latest_checkpoint, load_checkpoint, prune_checkpoints,
                                        save_checkpoint, write_json)
from utils.training.runs import prepare_run_dir, summary_writer, trim_jsonl
from utils.training.seeding import capture_rng, epoch_indices, restore_rng, seed_step

__all__ = ["checkpoint_path", "latest_checkpoint", "load_checkpoint", "prune_checkpoints", "save_checkpoint",
           "write_json", "prepare_run_dir", "summary_writer", "trim_jsonl", "capture_rng", "epoch_indices",
           "restore_rng", "seed_step"]

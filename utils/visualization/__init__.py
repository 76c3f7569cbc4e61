"""Image grids, video files and 3D exports."""
from utils.visualization.grid import grid_array, make_grid, save_grid, to_pil

__all__ = ["grid_array", "make_grid", "save_grid", "to_pil"]

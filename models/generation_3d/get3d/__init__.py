"""NVIDIA's GET3D, in nv-tlabs' module layout: layers.py (triplane generator, SDF / deformation / texture
MLPs), geometry.py (SDF + deformation at the tetrahedral grid, empty-shape repair, DMTet meshes), model.py
(GET3DGenerator), render.py (GET3D's camera on the shared mesh rasterizer), discriminator.py, losses.py,
training.py (one step), trainer.py (the loop: data, EMA, checkpoints, resume, TensorBoard), data.py
(multi-view data sets), primitives.py (built-in renders), export.py (UV atlas + baked texture, turntables),
pipeline.py (GET3DPipeline), convert.py (official checkpoints), config.py, spec.py."""
from utils.lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(__name__, {
    "GET3DConfig": "config:GET3DConfig",
    "GET3DGenerator": "model:GET3DGenerator",
    "GET3DDiscriminator": "discriminator:GET3DDiscriminator",
    "GET3DPipeline": "pipeline:GET3DPipeline",
})

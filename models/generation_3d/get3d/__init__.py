"""NVIDIA's GET3D (work in progress, not registered in models/registry.py yet), in nv-tlabs' module layout:
layers.py (triplane generator, SDF / deformation / texture MLPs), geometry.py (SDF + deformation at the
tetrahedral grid, empty-shape repair, DMTet meshes), model.py (GET3DGenerator: mapping, mapping_geo,
synthesis), render.py (GET3D's camera on the shared mesh rasterizer, texture image), discriminator.py
(camera-conditioned RGB + silhouette discriminator), losses.py, training.py (one step), primitives.py
(built-in multi-view renders), convert.py (official checkpoints), config.py. No spec.py, pipeline, CLI
or model card yet."""

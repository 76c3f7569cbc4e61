"""NVIDIA's GET3D (work in progress, not registered yet): StyleGAN2 triplane generators whose features,
decoded at tetrahedral-grid vertices, give SDF values and deformations for DMTet, and at surface points
colours. So far: the triplane generator and its implicit decoders (layers.py), in nv-tlabs' layout."""

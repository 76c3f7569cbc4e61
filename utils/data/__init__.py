"""Datasets, augmentations, loaders and readers of real data formats."""

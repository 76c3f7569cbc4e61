"""The CO3D layout: reader, cameras, preprocessing commands, and the built-in dataset."""

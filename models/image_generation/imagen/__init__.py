"""Imagen stand-in: the DeepFloyd IF cascade (stage I and II pixel UNets) and the SD x4 upscaler; see README.md."""

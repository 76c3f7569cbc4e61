"""The StyleGAN family's building blocks, shared by every style-based generator of the zoo (StyleGAN2/3,
and the 3D-aware generators built on them): FIR resampling (`upfirdn2d`), bias + activation,
(modulated) convolutions with resampling, the filtered leaky ReLU and its Kaiser / jinc filters,
equalized layers, the mapping network, StyleGAN2 and StyleGAN3 synthesis networks and the StyleGAN2
discriminator. Every op is plain PyTorch; module names follow NVlabs' releases so their state dicts
load without renaming.
"""
from utils.lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(__name__, {
    "setup_filter": "upfirdn2d:setup_filter",
    "upfirdn2d": "upfirdn2d:upfirdn2d",
    "filter2d": "upfirdn2d:filter2d",
    "upsample2d": "upfirdn2d:upsample2d",
    "downsample2d": "upfirdn2d:downsample2d",
    "ACTIVATIONS": "bias_act:ACTIVATIONS",
    "bias_act": "bias_act:bias_act",
    "conv2d_resample": "conv:conv2d_resample",
    "modulated_conv2d": "conv:modulated_conv2d",
    "modulated_conv2d_normalized": "conv:modulated_conv2d_normalized",
    "design_lowpass_filter": "filtered_lrelu:design_lowpass_filter",
    "filtered_lrelu": "filtered_lrelu:filtered_lrelu",
    "FullyConnectedLayer": "layers:FullyConnectedLayer",
    "Conv2dLayer": "layers:Conv2dLayer",
    "MappingNetwork": "mapping:MappingNetwork",
    "StyleGAN2Synthesis": "stylegan2:StyleGAN2Synthesis",
    "StyleGAN3Synthesis": "stylegan3:StyleGAN3Synthesis",
    "SynthesisInput": "stylegan3:SynthesisInput",
    "AliasFreeLayer": "stylegan3:AliasFreeLayer",
    "layer_plan": "stylegan3:layer_plan",
    "StyleGAN2Discriminator": "discriminator:StyleGAN2Discriminator",
    "MinibatchStdLayer": "discriminator:MinibatchStdLayer",
})

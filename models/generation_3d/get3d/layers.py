"""GET3D's generator blocks in nv-tlabs' module layout (training/geometry_predictor.py), so their
checkpoints' keys load unchanged: a two-headed StyleGAN2 synthesis network that draws the geometry
and texture triplanes together, and the style-modulated MLPs that decode triplane features.

- `ImplicitSynthesisLayer`: a style-modulated, demodulated fully connected layer applied to every
  point of a (B, P, C) feature set (the 1x1 analogue of a StyleGAN2 modulated convolution), then
  bias + activation along the last dimension.
- `ImplicitSynthesisNetwork`: `n_layers` of them at `latent_channel` width and a linear output
  layer, one w per layer (`num_ws = n_layers + 1`).
- `SynthesisBlockTexGeo`: a StyleGAN2 block (const | conv0 up, conv1; the project's StyleGAN2Layer)
  with two skip outputs: `togeo` driven by the geometry ws and `totex` by the texture ws; its
  image is [geometry channels, texture channels]. The convolutions take the geometry ws.
- `SynthesisNetworkTexGeo`: the blocks b4 ... b{R}; it splits `ws_geo` (num_conv + 1 per block)
  and `ws_tex` (1 per block) and sums the skip images.
- `TriPlaneTexGeo`: the synthesis network producing 3 x 32 geometry and 3 x 32 texture feature
  planes; `get_sdf_def_prediction` samples the geometry planes at grid vertices and decodes SDF
  (1) and deformation (3), `get_texture_prediction` samples the texture planes at surface points
  and decodes colours. A point (x, y, z) in [shape_min, shape_min + shape_length]^3 reads plane 0 at
  (x, y), plane 1 at (y, z) and plane 2 at (x, z) (bilinear, zero padding, positions clamped to the box)
  and the three are summed.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from utils.nn.stylegan.bias_act import ACTIVATIONS, bias_act
from utils.nn.stylegan.layers import FullyConnectedLayer
from utils.nn.stylegan.stylegan2 import StyleGAN2Layer, ToRGBLayer
from utils.nn.stylegan.upfirdn2d import setup_filter, upsample2d

__all__ = ["ImplicitSynthesisLayer", "ImplicitSynthesisNetwork", "SynthesisBlockTexGeo", "SynthesisNetworkTexGeo",
           "TriPlaneTexGeo", "sample_triplane"]

TRIPLANE_CHANNELS = 32
"""Feature channels per plane (GET3D fixes it)."""


class ImplicitSynthesisLayer(nn.Module):
    """Style-modulated fully connected layer over point features (B, P, in) -> (B, P, out)."""

    def __init__(self, in_channels: int, out_channels: int, w_dim: int, activation: str = "lrelu"):
        super().__init__()
        self.in_channels, self.out_channels, self.w_dim, self.activation = in_channels, out_channels, w_dim, activation
        self.act_gain = ACTIVATIONS[activation].gain
        self.affine = FullyConnectedLayer(w_dim, in_channels, bias_init=1)
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels))
        self.bias = nn.Parameter(torch.zeros(out_channels))

    def forward(self, w: Tensor, x: Tensor) -> Tensor:
        styles = self.affine(w)  # (B, in)
        weight = self.weight.unsqueeze(0) * styles.unsqueeze(1)  # (B, out, in)
        weight = weight * (weight.square().sum(-1, keepdim=True) + 1e-8).rsqrt()
        x = torch.bmm(x, weight.transpose(1, 2))
        return bias_act(x, self.bias.to(x.dtype), dim=2, act=self.activation, gain=self.act_gain)


class ImplicitSynthesisNetwork(nn.Module):
    """`n_layers` modulated layers of width `latent_channel`, then a linear one to `out_channels`."""

    def __init__(self, w_dim: int, input_channel: int, out_channels: int, latent_channel: int, n_layers: int):
        super().__init__()
        self.n_layer, self.w_dim, self.out_channels = n_layers, w_dim, out_channels
        widths = [input_channel] + [latent_channel] * n_layers
        self.layers = nn.ModuleList([ImplicitSynthesisLayer(widths[i], latent_channel, w_dim) for i in range(n_layers)]
                                    + [ImplicitSynthesisLayer(latent_channel, out_channels, w_dim, "linear")])
        self.num_ws = n_layers + 1

    def forward(self, ws: Tensor, x: Tensor) -> Tensor:
        for i, layer in enumerate(self.layers):
            x = layer(ws[:, i], x)
        return x


class SynthesisBlockTexGeo(nn.Module):
    """One resolution of the triplane synthesis: convolutions on ws_geo, geometry and texture skip outputs."""

    def __init__(self, in_channels: int, out_channels: int, w_dim: int, resolution: int, img_channels: int,
                 geo_channel: int, is_last: bool, resample_filter=(1, 3, 3, 1), conv_clamp: float | None = 256):
        super().__init__()
        self.in_channels, self.w_dim, self.resolution = in_channels, w_dim, resolution
        self.img_channels, self.geo_channel, self.is_last = img_channels, geo_channel, is_last
        self.register_buffer("resample_filter", setup_filter(list(resample_filter)))
        layer = dict(w_dim=w_dim, resolution=resolution, conv_clamp=conv_clamp)
        self.num_conv = 0
        if in_channels == 0:
            self.const = nn.Parameter(torch.randn(out_channels, resolution, resolution))
        else:
            self.conv0 = StyleGAN2Layer(in_channels, out_channels, up=2, resample_filter=resample_filter, **layer)
            self.num_conv += 1
        self.conv1 = StyleGAN2Layer(out_channels, out_channels, **layer)
        self.num_conv += 1
        self.totex = ToRGBLayer(out_channels, img_channels, w_dim=w_dim, conv_clamp=conv_clamp)
        self.togeo = ToRGBLayer(out_channels, geo_channel, w_dim=w_dim, conv_clamp=conv_clamp)
        self.num_torgb = self.num_togeo = 1

    def forward(self, x: Tensor | None, img: Tensor | None, ws_tex: Tensor, ws_geo: Tensor,
                noise_mode: str = "const", fused_modconv: bool = True) -> tuple[Tensor, Tensor]:
        geo = iter(ws_geo.unbind(1))
        kw = dict(noise_mode=noise_mode, fused_modconv=fused_modconv)
        if self.in_channels == 0:
            x = self.const.float()[None].repeat(ws_geo.shape[0], 1, 1, 1)
        else:
            x = self.conv0(x.float(), next(geo), **kw)
        x = self.conv1(x, next(geo), **kw)
        if img is not None:
            img = upsample2d(img, self.resample_filter)
        y = torch.cat([self.togeo(x, next(geo), fused_modconv=fused_modconv).float(),
                       self.totex(x, ws_tex[:, 0], fused_modconv=fused_modconv).float()], 1)
        return x, (y if img is None else img + y)


class SynthesisNetworkTexGeo(nn.Module):
    """Blocks b4 ... b{img_resolution}; (ws_tex, ws_geo) -> (B, geo_channel + img_channels, R, R)."""

    def __init__(self, w_dim: int, img_resolution: int, img_channels: int, geo_channel: int,
                 channel_base: int = 32768, channel_max: int = 512, **block_kwargs):
        super().__init__()
        if img_resolution < 4 or img_resolution & (img_resolution - 1):
            raise ValueError(f"the triplane resolution is a power of two >= 4, got {img_resolution}")
        self.w_dim, self.img_resolution, self.img_channels = w_dim, img_resolution, img_channels
        self.block_resolutions = [2 ** i for i in range(2, int(math.log2(img_resolution)) + 1)]
        channels = {r: min(channel_base // r, channel_max) for r in self.block_resolutions}
        self.num_ws_geo = self.num_ws_tex = 0
        for res in self.block_resolutions:
            block = SynthesisBlockTexGeo(channels[res // 2] if res > 4 else 0, channels[res], w_dim, res, img_channels,
                                         geo_channel, is_last=res == img_resolution, **block_kwargs)
            self.num_ws_geo += block.num_conv + block.num_togeo
            self.num_ws_tex += block.num_torgb
            setattr(self, f"b{res}", block)

    def forward(self, ws_tex: Tensor, ws_geo: Tensor, **block_kwargs) -> Tensor:
        x = img = None
        i_tex = i_geo = 0
        for res in self.block_resolutions:
            block = getattr(self, f"b{res}")
            n_geo = block.num_conv + block.num_togeo
            x, img = block(x, img, ws_tex[:, i_tex:i_tex + 1].float(), ws_geo[:, i_geo:i_geo + n_geo].float(),
                           **block_kwargs)
            i_tex, i_geo = i_tex + 1, i_geo + n_geo
        return img


def sample_triplane(planes: Tensor, points: Tensor, shape_min: float, shape_length: float) -> Tensor:
    """Sum of the three planes' features at `points` (B, P, 3): planes (B, 3 * C, R, R) -> (B, P, C)."""
    xy, yz, xz = planes.chunk(3, dim=1)
    p = ((points - shape_min) / shape_length).clamp(0, 1) * 2 - 1
    feats = 0
    for plane, (a, b) in ((xy, (0, 1)), (yz, (1, 2)), (xz, (0, 2))):
        grid = p[..., [a, b]].unsqueeze(1).detach()  # GET3D samples the planes without a gradient to positions
        feats = feats + F.grid_sample(plane, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    return feats.squeeze(2).permute(0, 2, 1)


class TriPlaneTexGeo(nn.Module):
    """Geometry and texture triplanes from one synthesis network, decoded by three modulated MLPs."""

    def __init__(self, w_dim: int, img_channels: int, tri_plane_resolution: int = 128, shape_min: float = -1.0,
                 shape_lenght: float = 2.0, mlp_latent_channel: int = 256, n_implicit_layer: int = 3,
                 **block_kwargs):
        super().__init__()
        c = TRIPLANE_CHANNELS
        self.img_feat_dim, self.w_dim, self.shape_min, self.shape_lenght = c, w_dim, shape_min, shape_lenght
        self.tri_plane_resolution, self.n_implicit_layer = tri_plane_resolution, n_implicit_layer
        self.tri_plane_synthesis = SynthesisNetworkTexGeo(w_dim, tri_plane_resolution, img_channels=3 * c,
                                                          geo_channel=3 * c, **block_kwargs)
        mlp = dict(w_dim=w_dim, input_channel=c, latent_channel=mlp_latent_channel, n_layers=n_implicit_layer)
        self.mlp_synthesis_tex = ImplicitSynthesisNetwork(out_channels=img_channels, **mlp)
        self.mlp_synthesis_sdf = ImplicitSynthesisNetwork(out_channels=1, **mlp)
        self.mlp_synthesis_def = ImplicitSynthesisNetwork(out_channels=3, **mlp)
        self.num_ws_geo = self.tri_plane_synthesis.num_ws_geo + self.mlp_synthesis_sdf.num_ws
        self.num_ws_tex = self.tri_plane_synthesis.num_ws_tex + self.mlp_synthesis_tex.num_ws

    def get_feature(self, ws_tex: Tensor, ws_geo: Tensor, **block_kwargs) -> tuple[Tensor, Tensor]:
        """(geometry planes, texture planes), each (B, 3 * 32, R, R); noise is the constant buffers."""
        planes = self.tri_plane_synthesis(ws_tex[:, :self.num_ws_tex], ws_geo[:, :self.num_ws_geo],
                                          noise_mode="const", **block_kwargs)
        return planes[:, :3 * self.img_feat_dim], planes[:, 3 * self.img_feat_dim:]

    def get_sdf_def_prediction(self, sdf_feature: Tensor, position: Tensor, ws_geo: Tensor) -> tuple[Tensor, Tensor]:
        """SDF (B, P, 1) and deformation (B, P, 3) at grid vertices `position` (B, P, 3)."""
        feat = sample_triplane(sdf_feature, position, self.shape_min, self.shape_lenght)
        return self.mlp_synthesis_sdf(ws_geo, feat), self.mlp_synthesis_def(ws_geo, feat)

    def get_texture_prediction(self, tex_feature: Tensor, position: Tensor, ws_tex: Tensor) -> Tensor:
        """Texture features (B, P, img_channels) at surface points `position` (B, P, 3)."""
        return self.mlp_synthesis_tex(ws_tex, sample_triplane(tex_feature, position, self.shape_min,
                                                              self.shape_lenght))

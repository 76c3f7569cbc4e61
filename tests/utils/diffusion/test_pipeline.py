"""The DiffusionPipeline base on a toy pipeline: components, the from_pretrained preamble, spec defaults,
per-image seeding, the call session, the VAE through offload hooks, and the errors users meet."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from models.spec import ModelSpec
from utils.diffusion import DiffusionPipeline
from utils.errors import UserError
from utils.nn import get_attention_backend

SPEC = ModelSpec(modality="image", name="toy", summary="a toy", package="tests", pipeline="tests:Toy",
                 presets=("big", "tiny"), default_preset="big",
                 defaults={"*": {"steps": 20, "guidance": 3.0}, "tiny": {"steps": 2}})


class Encoder(nn.Module):
    def __init__(self):
        super().__init__()
        self.proj = nn.Linear(3, 3)

    @property
    def device(self) -> torch.device:
        return self.proj.weight.device

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x.to(self.device))


class Denoiser(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(4, 4)
        self.compiled_blocks = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.lin(x)

    def compile_blocks(self, **kwargs) -> None:
        self.compiled_blocks = True


class VAE(nn.Module):
    """The methods a pipeline calls on a KL VAE: encode (with .moments), decode_latents, scale_latents."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 1)
        self.dec = nn.Conv2d(4, 3, 1)
        self.tile_latent = 0

    def encode(self, x: torch.Tensor):
        from utils.encoders.vae import DiagonalGaussian

        return DiagonalGaussian(self.conv(x))

    def scale_latents(self, z: torch.Tensor) -> torch.Tensor:
        return 2 * z

    def decode_latents(self, z: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.dec(z))

    def enable_tiling(self, tile_latent: int, overlap_latent: int) -> None:
        self.tile_latent = tile_latent


class Toy(DiffusionPipeline):
    spec = SPEC
    components = ("encoders", "denoiser_net", "absent", "vae")
    denoiser_name = "denoiser_net"

    def __init__(self, preset: str = "tiny", vae: bool = True):
        torch.manual_seed(0)
        self.encoders = [Encoder(), Encoder()]
        self.denoiser_net = Denoiser()
        self.absent = None
        self.vae = VAE() if vae else None
        self.preset = preset


def test_components_device_dtype_and_to():
    pipe = Toy()
    assert [n for n, _ in pipe.named_components()] == ["encoders.0", "encoders.1", "denoiser_net", "vae"]
    assert pipe.device == torch.device("cpu") and pipe.dtype == torch.float32
    pipe.to(dtype=torch.float64)
    assert all(p.dtype == torch.float64 for _, m in pipe.named_components() for p in m.parameters())
    assert pipe.dtype == torch.float64


def test_resolve_is_the_from_pretrained_preamble():
    place = Toy.resolve(None, None, "cpu", None)
    assert place.preset == "big" and place.dtype == torch.float32 and place.device == torch.device("cpu")
    assert Toy.resolve("some/folder", None, "cpu", "bf16").preset is None  # the weights will tell
    assert Toy.resolve(None, "tiny", "cpu", None, offload="model").load_device == torch.device("cpu")
    with pytest.raises(UserError, match="no preset 'tinny'.*tiny"):
        Toy.resolve(None, "tinny", "cpu", None)
    with pytest.raises(UserError, match="offload must be 'model' or 'sequential'"):
        Toy.resolve(None, None, "cpu", None, offload="disk")
    with pytest.raises(UserError, match="unknown dtype"):
        Toy.resolve(None, None, "cpu", "fp12")


def test_defaults_come_from_the_spec():
    assert Toy("tiny").default("steps") == 2 and Toy("big").default("steps") == 20
    assert Toy("tiny").default("guidance") == 3.0  # the shared '*' value
    assert Toy("tiny").default("steps", 7) == 7
    with pytest.raises(KeyError, match="no default for 'strength'"):
        Toy().default("strength")


def test_generators_give_image_i_seed_plus_i():
    pipe = Toy()
    assert [g.initial_seed() for g in pipe.generators(5, 4)] == [5, 6, 7, 8]
    assert [g.initial_seed() for g in pipe.generators([3, 9], 2)] == [3, 9]
    one = torch.Generator().manual_seed(1)
    assert pipe.generators(5, 4, generator=one) is one  # one generator draws the whole batch
    with pytest.raises(UserError, match="3 generators for 2 images"):
        pipe.generators(None, 2, generator=[one, one, one])
    with pytest.raises(UserError, match="3 seeds for 2 images"):
        pipe.generators([1, 2, 3], 2)
    fresh = pipe.generators(None, 3)
    assert [g.initial_seed() - fresh[0].initial_seed() for g in fresh] == [0, 1, 2]


def test_encode_latents_draws_image_i_from_generator_i():
    pipe = Toy()
    x = torch.rand(1, 3, 4, 4) * 2 - 1
    gens = [torch.Generator().manual_seed(s) for s in (5, 6)]
    both = pipe.encode_latents(x, gens)
    alone = pipe.encode_latents(x, [torch.Generator().manual_seed(6)])
    assert both.shape == (2, 4, 4, 4) and torch.equal(both[1:], alone)
    assert not torch.equal(both[0], both[1])
    with pytest.raises(UserError, match="3 input images for 2 outputs"):
        pipe.encode_latents(torch.zeros(3, 3, 4, 4), gens)


def test_session_sets_attention_and_releases_offloaded_models(monkeypatch):
    pipe = Toy().configure(torch.device("cpu"), attention="math")
    released = []
    monkeypatch.setattr(pipe, "release_offloaded", lambda: released.append(True))
    outside = get_attention_backend()
    with pipe.session():
        assert get_attention_backend() == "math" and not torch.is_grad_enabled()
    assert get_attention_backend() == outside and released == [True]
    with pytest.raises(RuntimeError), pipe.session():
        raise RuntimeError("a failing call")
    assert released == [True, True]  # released even when the call fails
    with pytest.raises(UserError, match="unknown attention backend"):
        Toy().configure(torch.device("cpu"), attention="flashy")


@pytest.mark.parametrize("mode", ["model", "sequential"])
def test_offload_hooks_every_model_and_keeps_outputs(mode):
    """accelerate's hooks with the CPU as the execution device: every component is hooked (the VAE
    through the module that routes its method calls), and the outputs are unchanged."""
    plain = Toy()
    z = torch.randn(2, 4, 3, 3)
    expect = plain.decode_latents(z)
    pipe = Toy().configure(torch.device("cpu"), offload=mode)
    assert pipe.offload == mode and pipe.device == torch.device("cpu")
    assert all(hasattr(m, "_hf_hook") for m in (*pipe.encoders, pipe.denoiser_net, pipe._vae_runner))
    assert torch.equal(pipe.decode_latents(z), expect)
    assert pipe.encoders[0].device == torch.device("cpu")  # not 'meta' after sequential offload
    x = torch.randn(2, 3)
    assert torch.allclose(pipe.encoders[0](x), plain.encoders[0](x))
    with pytest.raises(UserError, match="call .to\\(\\) before enabling offload"):
        pipe.to("cpu")
    with pytest.raises(UserError, match="already on"):
        pipe.enable_model_cpu_offload("cpu")


def test_tiling_and_compile_switches():
    pipe = Toy().configure(torch.device("cpu"), vae_tiling=True, compile=True)
    assert pipe.vae.tile_latent == 64 and pipe.denoiser_net.compiled_blocks
    with pytest.raises(UserError, match="no VAE"):
        Toy(vae=False).enable_vae_tiling()


def test_output_holds_pixels_in_0_1_and_latents():
    pipe = Toy()
    z = torch.randn(1, 4, 2, 2)
    out = pipe.output(torch.full((1, 3, 2, 2), -1.0), z)
    assert out.pixels.min() == 0.0 and len(out.images) == 1 and out.latents is z
    assert pipe.output(None, z).images == []

"""Training the triplane GANs: the recipe train_gan.py runs, and `fit` for a run in-process.

Losses (the Aetherist seed's, on EG3D's training scheme):
- non-saturating GAN loss with the R1 penalty on real images (gamma `r1_gamma`), the discriminator seeing
  the final image and the raw render together (dual discrimination) and the camera label;
- VGG perceptual loss (`lambda_perceptual`, 0.1) between the super-resolved image and the upsampled raw
  render, so the super-resolution adds detail without changing the rendered content;
- multi-view consistency (`lambda_consistency`, 0.05): the same latent rendered from a second camera (the
  first turned about the vertical axis by up to `consistency_azimuth` degrees), its raw render reprojected
  into the first view through the first view's rendered depth and penalised where the two disagree,
  relative to chance (`utils.metrics.consistency_3d.normalized_reprojection_error`: the plain colour error
  would also fall by flattening the render; the README's ablation measures the loss);
- density regularisation (`density_reg`, EG3D's 0.25): densities at random points and at points moved by
  `density_reg_p_dist` should agree (a smoothness prior against floaters).
Generation cameras are the dataset's camera labels (EG3D's pose swapping); Adam, lr 2e-4 for G and D,
betas (0, 0.99). With `--aug ada` (train_gan) ADA's pipeline (utils/gan/ada.py, on the discriminator as
`augment`) transforms the image and the upsampled raw render of every discriminator input identically
(EG3D's pairing), and p follows sign(D(real)) against the target every 4 steps.

The config keys of the seed's YAML (`training:` batch_size, learning_rate_g, learning_rate_d,
lambda_perceptual, lambda_consistency; `model:` the config fields) are read by `settings_from_yaml`.
"""
from __future__ import annotations

from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from models.gan.aetherist.config import PRESETS, AetheristConfig, config_from_dict
from models.gan.aetherist.data import load_camera_dataset
from models.gan.aetherist.model import AetheristDiscriminator, TriplaneGenerator
from utils.errors import UserError
from utils.gan.recipe import GANRecipe, StepContext
from utils.metrics.consistency_3d import normalized_reprojection_error
from utils.rendering.camera_labels import rotate_labels

__all__ = ["AetheristTraining", "settings_from_yaml", "recipe", "fit", "GeneratorForTrainer"]


@dataclass(frozen=True)
class AetheristTraining:
    """The training hyperparameters (the seed's `training:` keys)."""

    batch_size: int = 32
    """Images per step."""
    learning_rate_g: float = 2e-4
    """Generator learning rate."""
    learning_rate_d: float = 2e-4
    """Discriminator learning rate."""
    lambda_perceptual: float = 0.1
    """Weight of the VGG perceptual loss (super-resolved image vs upsampled raw render)."""
    lambda_consistency: float = 0.05
    """Weight of the multi-view reprojection loss."""
    consistency_azimuth: float = 30.0
    """The consistency loss's second camera: the first turned about the vertical axis through the origin by
    a random angle within +- this many degrees."""
    density_reg: float = 0.25
    """Weight of the density smoothness loss."""
    density_reg_p_dist: float = 0.004
    """Distance of the perturbed points of the density loss."""
    r1_gamma: float = 1.0
    """R1 weight gamma (applied as gamma / 2 * R1)."""
    num_epochs: int = 500
    """Epochs (the seed's key; train_gan counts steps: --steps)."""
    vgg_weights: str | None = None
    """torchvision's vgg19 weights file for the perceptual loss; None: seeded random VGG features (tiny runs)."""


def settings_from_yaml(path: str | Path, preset: str = "tiny") -> tuple[AetheristConfig, AetheristTraining]:
    """(model config, training settings) from a YAML file with `model:` and `training:` sections."""
    import yaml

    try:
        data = yaml.safe_load(Path(path).read_text()) or {}
    except (OSError, yaml.YAMLError) as err:
        raise UserError(f"cannot read the config {path}: {str(err).splitlines()[0]}") from None
    if not isinstance(data, dict):
        raise UserError(f"{path} must hold a mapping with 'model:' and 'training:' sections")
    config = config_from_dict(data.get("model") or {}, PRESETS[preset])
    known = {f.name for f in fields(AetheristTraining)}
    train = data.get("training") or {}
    bad = sorted(set(train) - known)
    if bad:
        from utils.errors import did_you_mean
        raise UserError(f"unknown training key '{bad[0]}' in {path}: {did_you_mean(bad[0], sorted(known))}")
    return config, AetheristTraining(**{k: (float(v) if isinstance(getattr(AetheristTraining, k, None), float)
                                            else v) for k, v in train.items()})


class GeneratorForTrainer(TriplaneGenerator):
    """The triplane generator with the trainer's `forward(z, labels)` contract (front camera) for sample grids
    and EMA; training itself calls `mapping` / `synthesis` with the data's cameras."""

    def front_labels(self, n: int, device: torch.device) -> Tensor:
        from utils.rendering.camera_labels import camera_label, create_camera_pose, normalized_intrinsics

        cfg = self.config
        pose = create_camera_pose(0.0, 0.0, cfg.avg_camera_radius, target=cfg.avg_camera_pivot)
        return camera_label(pose, normalized_intrinsics(cfg.fov_degrees)).expand(n, 25).to(device)

    def forward(self, z: Tensor, c: Tensor | None = None, *args: Any, **kwargs: Any) -> Any:
        if c is None or c.ndim != 2 or c.shape[1] != 25:
            return super().forward(z, self.front_labels(len(z), z.device))["image"]
        return super().forward(z, c, *args, **kwargs)


def _ns_d(real: Tensor, fake: Tensor) -> Tensor:
    return F.softplus(fake).mean() + F.softplus(-real).mean()


def _dual(image: Tensor, raw_size: int) -> dict[str, Tensor]:
    return {"image": image, "image_raw": F.interpolate(image, size=(raw_size, raw_size), mode="bilinear",
                                                        align_corners=False, antialias=True)}


def make_train_step(config: AetheristConfig, settings: AetheristTraining, perceptual: nn.Module | None):
    """The step: one discriminator update (with R1), one generator update (GAN + perceptual + consistency +
    density). Returns its log."""
    res = config.neural_rendering_resolution

    def step(ctx: StepContext) -> dict[str, float]:
        gen, dev = ctx.generator, ctx.device
        G, D = ctx.G, ctx.D
        s = ctx.settings
        ada = ctx.unwrap(D).augment if getattr(s, "augment", "") == "ada" else None
        if s is not None and getattr(s, "augment", "") not in ("", "ada", "noaug"):
            raise UserError(f"aetherist trains with --aug ada or no augmentation, not '{s.augment}'")

        def aug(pair: dict[str, Tensor]) -> dict[str, Tensor]:
            if ada is None:
                return pair
            # one draw of transforms for both images: replay the generator's state for the raw render
            state = gen.get_state()
            image = ada(pair["image"], gen)
            replay = torch.Generator(device=gen.device)
            replay.set_state(state)
            up = F.interpolate(pair["image_raw"], size=image.shape[-2:], mode="bilinear", align_corners=False)
            raw = F.interpolate(ada(up, replay), size=pair["image_raw"].shape[-2:], mode="bilinear",
                                align_corners=False, antialias=True)
            return {"image": image, "image_raw": raw}

        batch = ctx.next_batch()
        real, c = batch["image"], batch["camera"].float()
        n = len(real)
        z = torch.randn(n, config.latent_dim, generator=gen).to(dev)
        # discriminator
        with torch.no_grad():
            fake = G.synthesis(G.mapping(z, c), c, generator=gen)
        real_in = {k: v.detach().requires_grad_(True) for k, v in _dual(real, res).items()}
        logits_real = D(aug(real_in), c)
        loss_d = _ns_d(logits_real, D(aug({"image": fake["image"], "image_raw": fake["image_raw"]}), c))
        if settings.r1_gamma > 0:
            grads = torch.autograd.grad(logits_real.sum(), [real_in["image"], real_in["image_raw"]],
                                        create_graph=True)
            r1 = sum(g.square().sum([1, 2, 3]) for g in grads).mean()
            loss_d = loss_d + settings.r1_gamma / 2 * r1
        ctx.opt_d.zero_grad(set_to_none=True)
        ctx.accelerator.backward(loss_d)
        ctx.opt_d.step()
        ada_log = {}
        if ada is not None:
            ada.accumulate(logits_real)
            if (ctx.step + 1) % 4 == 0:
                ada.adjust(getattr(s, "ada_target", 0.6), n * 4)
            ada_log["ada_p"] = float(ada.p)
        # generator
        ws = G.mapping(z, c)
        out = G.synthesis(ws, c, generator=gen)
        loss_gan = F.softplus(-D(aug({"image": out["image"], "image_raw": out["image_raw"]}), c)).mean()
        loss_g = loss_gan
        log = {"loss_d": float(loss_d.detach()), "loss_gan": float(loss_gan.detach()), **ada_log}
        if settings.lambda_perceptual > 0 and perceptual is not None:
            up = F.interpolate(out["image_raw"], size=out["image"].shape[-2:], mode="bilinear", align_corners=False)
            loss_p = perceptual(out["image"], up.detach())
            loss_g = loss_g + settings.lambda_perceptual * loss_p
            log["loss_perceptual"] = float(loss_p.detach())
        if settings.lambda_consistency > 0:
            turn = (torch.rand(n, generator=gen) * 2 - 1) * settings.consistency_azimuth
            c2 = rotate_labels(c, turn.to(dev))
            other = G.synthesis(ws, c2, generator=gen, planes=out["planes"])
            loss_c = normalized_reprojection_error(out["image_raw"], out["image_depth"], c, other["image_raw"],
                                                   c2, out["image_opacity"].detach(), generator=gen)
            loss_g = loss_g + settings.lambda_consistency * loss_c
            log["loss_consistency"] = float(loss_c.detach())
        if settings.density_reg > 0:
            half = config.box_warp / 2
            pts = (torch.rand(n, 256, 3, generator=gen) * 2 - 1).to(dev) * half
            moved = pts + torch.randn(pts.shape, generator=gen).to(dev) * settings.density_reg_p_dist
            both = G.sample_mixed(torch.cat([pts, moved], 1), torch.zeros_like(torch.cat([pts, moved], 1)), ws,
                                  planes=out["planes"])["sigma"]
            loss_tv = (both[:, :256] - both[:, 256:]).abs().mean()
            loss_g = loss_g + settings.density_reg * loss_tv
            log["loss_density"] = float(loss_tv.detach())
        ctx.opt_g.zero_grad(set_to_none=True)
        ctx.accelerator.backward(loss_g)
        ctx.opt_g.step()
        log["loss_g"] = float(loss_g.detach())
        return log

    return step


def _perceptual(settings: AetheristTraining, tiny: bool) -> nn.Module | None:
    if settings.lambda_perceptual <= 0:
        return None
    from utils.gan.perceptual import VGGPerceptualLoss

    pretrained = settings.vgg_weights is not None or not tiny
    return VGGPerceptualLoss(layer="relu2_2", pretrained=pretrained, weights=settings.vgg_weights,
                             width=1.0 if pretrained else 0.25)


def recipe(preset: str = "tiny", config: AetheristConfig | None = None,
           settings: AetheristTraining | None = None, config_file: str | None = None,
           **overrides: Any) -> GANRecipe:
    """The recipe of `preset` for train_gan.py (its `--data` folder needs EG3D's dataset.json; 'primitives'
    is the built-in multi-view set); `config_file` (train_gan's --config) is a YAML of the seed's keys."""
    from models.gan.aetherist.spec import SPEC

    SPEC.check_preset(preset)
    if config_file is not None:
        config, settings = settings_from_yaml(config_file, preset)
    config = config or PRESETS[preset]
    settings = replace(settings or AetheristTraining(), **overrides)
    G, D = GeneratorForTrainer(config), AetheristDiscriminator(config)
    perceptual = _perceptual(settings, preset == "tiny")
    step = make_train_step(config, settings, perceptual)
    return GANRecipe(generator=G, discriminator=D, config=config, lr_g=settings.learning_rate_g,
                     lr_d=settings.learning_rate_d, betas=(0.0, 0.99), r1_weight=settings.r1_gamma,
                     batch_size=settings.batch_size, train_step=step, ema_beta=0.999,
                     make_dataset=lambda name: load_camera_dataset(name, config.image_resolution,
                                                                   config.avg_camera_radius, config.fov_degrees))


class _PlainAccelerator:
    """What a train_step needs of accelerate's Accelerator, for an in-process single-device run."""

    @staticmethod
    def backward(loss: Tensor) -> None:
        loss.backward()

    @staticmethod
    def unwrap_model(module: nn.Module) -> nn.Module:
        return module


def fit(preset: str = "tiny", steps: int = 20, dataset: Any = "primitives", seed: int = 0,
        batch_size: int = 4, device: str = "cpu", augment: str = "", ada_target: float = 0.6,
        log_every: int = 0, log_prefix: str = "", **overrides: Any) -> tuple[GANRecipe, list[dict[str, float]]]:
    """Train in-process (tests, benchmarks, notebooks): (the recipe with its trained networks, the step logs).
    `augment='ada'` trains with ADA as train_gan's --aug ada does; `log_every` > 0 prints the step's losses
    (after `log_prefix`) every that many steps."""
    from types import SimpleNamespace

    from utils.torch_utils import local_seed
    from utils.training import seed_step

    with local_seed(seed):
        rec = recipe(preset, batch_size=batch_size, **overrides)
    data = rec.make_dataset(dataset) if isinstance(dataset, str) else dataset
    G, D = rec.generator.to(device).train(), rec.discriminator.to(device).train()
    opt_g = torch.optim.Adam(G.parameters(), lr=rec.lr_g, betas=rec.betas)
    opt_d = torch.optim.Adam(D.parameters(), lr=rec.lr_d, betas=rec.betas)
    order = torch.randperm(len(data), generator=torch.Generator().manual_seed(seed))
    logs = []
    for step in range(steps):
        idx = [int(order[(step * batch_size + i) % len(data)]) for i in range(batch_size)]

        def next_batch(idx=idx) -> dict[str, Tensor]:
            items = [data[i] for i in idx]
            return {k: torch.stack([it[k] for it in items]).to(device) for k in ("image", "camera")}

        ctx = StepContext(step=step, generator=seed_step(seed, step, 0), G=G, D=D, opt_g=opt_g, opt_d=opt_d,
                          accelerator=_PlainAccelerator(), settings=SimpleNamespace(augment=augment,
                                                                                    ada_target=ada_target),
                          next_batch=next_batch,
                          device=torch.device(device))
        logs.append(rec.train_step(ctx))
        if log_every > 0 and (step + 1) % log_every == 0:
            losses = " ".join(f"{k} {v:.4f}" for k, v in logs[-1].items())
            print(f"{log_prefix} step {step + 1}/{steps}: {losses}", flush=True)
    return rec, logs

"""Shap-E text-to-3D speed: seconds per object, ours against diffusers' ShapEPipeline in one run.

Both pipelines get the same random weights (through our converter), the same prompt, steps,
guidance and seeds: the prior's sampling (Heun, 2 model calls per step, guidance doubling the
batch) and the decoding of 20 views at `--frame-size` with the released 64 + 128 samples per
ray. Our mesh extraction (marching cubes of the SDF + vertex colours) is timed on top; diffusers'
mesh decoder needs the marching-cubes tables of its released checkpoint, so it is not timed here.

    python -m benchmarks.text_to_3d                         # tiny and mid configurations, CPU
    python -m benchmarks.text_to_3d --configs mid --steps 16 --device cuda
    python -m benchmarks.text_to_3d --toy                   # seconds: the tests' smoke run
"""
from __future__ import annotations

import time
from dataclasses import replace

import torch

from utils.cli import ArgumentParser
from utils.errors import UserError, cli_errors

CONFIGS = ("tiny", "mid")


def _config(name: str):
    from models.generation_3d.shap_e.config import DecoderConfig, PriorConfig, get_config

    if name == "tiny":
        return get_config("tiny")
    # a mid-size model: a 4-block, 256-wide prior over 256 latent rows of a 64-wide decoder MLP
    dec = DecoderConfig(d_latent=64, hidden=64)
    prior = PriorConfig(n_ctx=dec.latent_rows, channels=dec.d_latent, width=256, layers=4, heads=4, cond="text",
                        cond_dim=24)
    return replace(get_config("tiny"), prior=prior, decoder=dec)


class _Tokenizer:
    """The tiny pipeline's stand-in tokenizer, answering with a BatchEncoding (diffusers reads `.input_ids`)."""

    def __init__(self, tok):
        self.tok = tok
        self.model_max_length = tok.model_max_length

    def __call__(self, *args, **kwargs):
        from transformers import BatchEncoding

        return BatchEncoding(self.tok(*args, **kwargs))


def _pipelines(name: str):
    from diffusers import HeunDiscreteScheduler, PriorTransformer
    from diffusers import ShapEPipeline as DiffusersShapE
    from diffusers.pipelines.shap_e.renderer import ShapERenderer
    from models.generation_3d.shap_e import convert as cv
    from models.generation_3d.shap_e.model import ShapEDecoder, ShapEPrior
    from models.generation_3d.shap_e.pipeline import ShapEPipeline, _random_state

    cfg = _config(name)
    tiny = ShapEPipeline.random("tiny")
    prior = _random_state(ShapEPrior(cfg.prior), 0)
    decoder = _random_state(ShapEDecoder(cfg.decoder), 1)
    with torch.no_grad():
        decoder.nerstf.mlp[-1].bias[1:3] = 1.0
    ours = ShapEPipeline(prior, decoder, tiny.encoder, cfg, "tiny")
    p, d = cfg.prior, cfg.decoder
    ref_prior = PriorTransformer(
        num_attention_heads=p.heads, attention_head_dim=p.width // p.heads, num_layers=p.layers,
        embedding_dim=p.channels, num_embeddings=p.n_ctx, additional_embeddings=0, time_embed_act_fn="gelu",
        norm_in_type="layer", encoder_hid_proj_type=None, added_emb_type=None, time_embed_dim=p.width * 4,
        embedding_proj_dim=p.cond_dim, clip_embed_dim=p.channels * 2).eval()
    ref_prior.load_state_dict(cv.prior_to_diffusers(prior.state_dict(), p.heads))
    renderer = ShapERenderer(param_names=tuple(decoder.param_names), param_shapes=tuple(d.layer_shapes()[:d.projected]),
                             d_latent=d.d_latent, d_hidden=d.hidden, n_output=d.outputs,
                             n_hidden_layers=d.hidden_layers).eval()
    renderer.load_state_dict(cv.decoder_to_diffusers(decoder.state_dict(), d))
    scheduler = HeunDiscreteScheduler(beta_schedule="exp", num_train_timesteps=1024, prediction_type="sample",
                                      use_karras_sigmas=True, clip_sample=True, clip_sample_range=1.0)
    ref = DiffusersShapE(prior=ref_prior, text_encoder=ours.encoder.model,
                         tokenizer=_Tokenizer(ours.encoder.tokenizer), scheduler=scheduler,
                         shap_e_renderer=renderer)
    ref.set_progress_bar_config(disable=True)
    return ours, ref


def bench(name: str, steps: int, frame_size: int, mesh_resolution: int, repeats: int, render: bool = True,
          warmup: bool = True) -> dict:
    ours, ref = _pipelines(name)
    prompt, guidance = "a red chair", 3.0

    def run_ours():
        lat = ours.sample_latents(ours.encode_prompt([prompt]), steps, guidance, seed=0)
        if render:
            ours.decode(lat, frame_size=frame_size, n_views=20, mesh=False)

    def run_ref():
        ref(prompt, num_inference_steps=steps, guidance_scale=guidance, frame_size=frame_size,
            generator=[torch.Generator().manual_seed(0)], output_type="np" if render else "latent")

    def timed(fn):
        if warmup:
            fn()
        best = float("inf")
        for _ in range(repeats):
            t = time.perf_counter()
            fn()
            best = min(best, time.perf_counter() - t)
        return best

    ours_s, ref_s = timed(run_ours), timed(run_ref)
    lat = ours.sample_latents(ours.encode_prompt([prompt]), steps, guidance, seed=0)
    t = time.perf_counter()
    from models.generation_3d.shap_e.render import extract_mesh

    verts, faces, _ = extract_mesh(ours.decoder, lat, mesh_resolution)
    mesh_s = time.perf_counter() - t
    return {"ours_s": ours_s, "diffusers_s": ref_s, "ratio": ours_s / ref_s, "mesh_s": mesh_s,
            "faces": int(len(faces)), "params": sum(p.numel() for p in ours.prior.parameters())}


@cli_errors("text_to_3d.py")
def main(argv: list[str] | None = None) -> dict:
    p = ArgumentParser(prog="text_to_3d.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--configs", nargs="+", default=list(CONFIGS), choices=CONFIGS)
    p.add_argument("--steps", type=int, default=16, help="Heun steps of the prior")
    p.add_argument("--frame-size", type=int, default=32, help="render side (diffusers needs 20 x side^2 to be a "
                                                              "multiple of 4096: 32, 64, 128...)")
    p.add_argument("--mesh-resolution", type=int, default=64)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--toy", action="store_true", help="tiny only, 2 steps, the prior only (no renders), 1 repeat "
                                                      "without warm-up, mesh 16")
    args = p.parse_args(argv)
    if args.toy:
        args.configs, args.steps, args.repeats, args.mesh_resolution = ["tiny"], 2, 1, 16
    if args.steps < 1 or args.repeats < 1 or args.mesh_resolution < 2:
        raise UserError("--steps and --repeats must be at least 1, --mesh-resolution at least 2")
    if (20 * args.frame_size ** 2) % 4096:
        raise UserError(f"--frame-size {args.frame_size}: diffusers renders 4096-ray batches only, so 20 x size^2 "
                        "must be a multiple of 4096 (32, 64, 128...)")
    if args.threads:
        torch.set_num_threads(args.threads)
    results = {}
    what = "prior only (--toy)" if args.toy else f"+ 20 views of {args.frame_size} px"
    print(f"Shap-E seconds per object (prior {args.steps} Heun steps {what}; "
          f"threads {torch.get_num_threads()}):")
    for name in args.configs:
        r = bench(name, args.steps, args.frame_size, args.mesh_resolution, args.repeats, render=not args.toy,
                  warmup=not args.toy)
        results[name] = r
        print(f"{name:>5}: ours {r['ours_s']:7.2f} s  diffusers {r['diffusers_s']:7.2f} s  ratio {r['ratio']:.2f}  "
              f"(+ mesh {r['mesh_s']:.2f} s at {args.mesh_resolution}^3, {r['faces']} faces; prior "
              f"{r['params'] / 1e6:.1f}M params)")
    return results


if __name__ == "__main__":
    main()

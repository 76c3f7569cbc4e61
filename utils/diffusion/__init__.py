"""Shared diffusion machinery: stateless schedulers, one sampling loop, guidance, per-image seeding,
call inputs, CPU offload and the `DiffusionPipeline` base every diffusion pipeline builds on."""
from utils.diffusion.guidance import cfg_combine, cfg_model, distilled_guidance_model, rescale_guidance
from utils.diffusion.noise import generators, initial_noise
from utils.diffusion.samplers import (InpaintBlend, SampleResult, StepInfo, StopAfter, blend, cutoff_steps,
                                      img2img_latents, img2img_start, sample, start_index)
from utils.diffusion.schedulers import (DDIM, DDPM, LCM, DPMSolverMultistep, EDMEuler, Euler, EulerAncestral,
                                        FlowMatchEuler, Heun, Schedule, Scheduler, StepOutput, flux_mu, get_scheduler,
                                        karras_sigmas, scheduler_from_diffusers_config, scheduler_names, time_shift)
from utils.diffusion.pipeline import DiffusionPipeline

__all__ = [
    "cfg_combine", "cfg_model", "distilled_guidance_model", "rescale_guidance",
    "generators", "initial_noise",
    "InpaintBlend", "SampleResult", "StepInfo", "StopAfter", "blend", "cutoff_steps", "img2img_latents",
    "img2img_start", "sample", "start_index",
    "DDIM", "DDPM", "LCM", "DPMSolverMultistep", "EDMEuler", "Euler", "EulerAncestral", "FlowMatchEuler", "Heun",
    "Schedule", "Scheduler", "StepOutput", "flux_mu", "get_scheduler", "karras_sigmas",
    "scheduler_from_diffusers_config", "scheduler_names", "time_shift",
    "DiffusionPipeline",
]

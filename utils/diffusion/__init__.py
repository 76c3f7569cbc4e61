"""Shared diffusion machinery: stateless schedulers, one sampling loop, guidance, seeded noise."""
from utils.diffusion.guidance import cfg_combine, cfg_model, distilled_guidance_model, rescale_guidance
from utils.diffusion.noise import generators, initial_noise, randn, randn_like
from utils.diffusion.samplers import (InpaintBlend, SampleResult, StepInfo, blend, img2img_latents, img2img_start,
                                      sample)
from utils.diffusion.schedulers import (DDIM, DDPM, LCM, DPMSolverMultistep, EDMEuler, Euler, EulerAncestral,
                                        FlowMatchEuler, Heun, Schedule, Scheduler, StepOutput, flux_mu, get_scheduler,
                                        karras_sigmas, scheduler_from_diffusers_config, scheduler_names, time_shift)

__all__ = [
    "cfg_combine", "cfg_model", "distilled_guidance_model", "rescale_guidance",
    "generators", "initial_noise", "randn", "randn_like",
    "InpaintBlend", "SampleResult", "StepInfo", "blend", "img2img_latents", "img2img_start", "sample",
    "DDIM", "DDPM", "LCM", "DPMSolverMultistep", "EDMEuler", "Euler", "EulerAncestral", "FlowMatchEuler", "Heun",
    "Schedule", "Scheduler", "StepOutput", "flux_mu", "get_scheduler", "karras_sigmas",
    "scheduler_from_diffusers_config", "scheduler_names", "time_shift",
]

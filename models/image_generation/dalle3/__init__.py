"""DALL-E 3 stand-in: prompt rewriting, a T5-conditioned base of the zoo (SD3 / FLUX), OpenAI's consistency
decoder, LCM fast mode on SDXL, prompt and image safety filters; see README.md."""
from utils.lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(__name__, {
    "DallE3Pipeline": "pipeline:DallE3Pipeline",
    "DallE3Output": "pipeline:DallE3Output",
    "PromptRewriter": "rewriter:PromptRewriter",
    "TemplateRewriter": "rewriter:TemplateRewriter",
    "CausalLMRewriter": "rewriter:CausalLMRewriter",
    "load_rewriter": "rewriter:load_rewriter",
})

"""Point-E: presets, weights and per-preset defaults (torch-free; the registry reads it)."""
from models.spec import ModelSpec, WeightsSource

_URL = "https://openaipublic.azureedge.net/main/point-e/"

SPEC = ModelSpec(
    modality="3d", name="point_e", package=__package__,
    summary="OpenAI's Point-E: text- or image-conditioned diffusion of coloured point clouds (1024 points, "
            "upsampled to 4096), and meshes through its point cloud -> SDF model.",
    pipeline="models.generation_3d.point_e.pipeline:PointEPipeline",
    presets=("base40M-textvec", "base40M", "base300M", "base1B", "tiny", "tiny-image"),
    default_preset="base40M-textvec",
    aliases=("point-e", "pointe"),
    paper="https://arxiv.org/abs/2212.08751",
    weights=tuple(
        WeightsSource(preset=p, source=_URL + f, licence="MIT")
        for p, f in (("base40M-textvec", "base_40m_textvec.pt"), ("base40M", "base_40m.pt"),
                     ("base300M", "base_300m.pt"), ("base1B", "base_1b.pt"))),
    defaults={
        "*": {"steps": 64, "guidance_scale": 3.0, "upsample_steps": 64, "mesh_resolution": 128, "n_views": 20,
              "frame_size": 256},
        "tiny": {"steps": 2, "upsample_steps": 2, "mesh_resolution": 12, "n_views": 2, "frame_size": 32},
        "tiny-image": {"steps": 2, "upsample_steps": 2, "mesh_resolution": 12, "n_views": 2, "frame_size": 32},
    },
)

# the files every preset needs besides its base model
UPSAMPLE_URL = _URL + "upsample_40m.pt"
SDF_URL = _URL + "sdf.pt"

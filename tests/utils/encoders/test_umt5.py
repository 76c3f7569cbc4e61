"""UMT5 (Wan's text encoder) through the shared T5 code: parity with transformers' UMT5EncoderModel at two
tiny configs after a round trip through the Wan release's layout and our loader, the diffusers-folder
path with its sibling tokenizer (a local file, nothing fetched), and full-size official key coverage."""
from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest
import torch
from helpers.tokenizers import write_t5_tokenizer
from transformers import UMT5EncoderModel

from utils.encoders.convert import t5_to_native
from utils.encoders.t5 import T5EncoderConfig, T5TextEncoder
from utils.encoders.umt5_convert import is_official, official_to_transformers, transformers_to_official
from utils.errors import ConversionError

FIXTURES = Path(__file__).parents[2] / "fixtures" / "wan"
TINY = T5EncoderConfig.preset("umt5-tiny")
TINY_B = TINY.with_(d_model=24, d_ff=40, d_kv=6, num_layers=3, num_heads=2, relative_attention_num_buckets=6,
                    relative_attention_max_distance=10)


def _reference(cfg: T5EncoderConfig, seed: int = 0) -> UMT5EncoderModel:
    ref = UMT5EncoderModel(cfg.to_transformers()).eval()
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in ref.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.3)
    return ref


@pytest.mark.parametrize("cfg", [TINY, TINY_B], ids=["tiny", "tiny-b"])
def test_official_file_parity_with_transformers(cfg, tmp_path):
    ref = _reference(cfg)
    official = transformers_to_official(ref.state_dict())
    assert is_official(official) and "blocks.1.pos_embedding.embedding.weight" in official
    path = tmp_path / "models_t5_umt5-xxl-enc-bf16.pth"
    torch.save(official, path)
    if cfg is TINY:  # the user's path: the official file and the matching preset
        ours = T5TextEncoder.from_pretrained(path, preset="umt5-tiny", device="cpu", dtype="float32", tokenizer=False)
    else:  # a config no preset holds: the loader's own steps (convert, find the encoder, build on meta)
        sd, _ = t5_to_native(official_to_transformers(torch.load(path, weights_only=True)))
        ours = T5TextEncoder(cfg, model=T5TextEncoder._build(cfg, sd))
    assert ours.config.per_layer_bias
    ids = torch.randint(1, cfg.vocab_size, (2, 11), generator=torch.Generator().manual_seed(1))
    mask = torch.ones_like(ids)
    mask[1, 7:] = 0
    with torch.no_grad():
        want = ref(input_ids=ids, attention_mask=mask).last_hidden_state
        got = ours(ids, mask).last_hidden_state
    assert (got - want).abs().max().item() <= 1e-4
    # Per-layer biases matter: layer 1's own table changes the output (T5 would ignore it).
    with torch.no_grad():
        table = ours.model.encoder.block[1].layer[0].SelfAttention.relative_attention_bias.weight
        table.add_(torch.randn(table.shape, generator=torch.Generator().manual_seed(5)))  # not a constant: softmax ignores those
        assert (ours(ids, mask).last_hidden_state - want).abs().max().item() > 1e-3


def test_diffusers_folder_with_local_tokenizer(tmp_path):
    info = write_t5_tokenizer(tmp_path / "wan" / "tokenizer")
    cfg = TINY.with_(vocab_size=info.vocab_size)
    ref = _reference(cfg, seed=2)
    ref.save_pretrained(tmp_path / "wan" / "text_encoder")
    enc = T5TextEncoder.from_pretrained(tmp_path / "wan", device="cpu", dtype="float32", max_length=16)
    assert enc.config.per_layer_bias and enc.tokenizer is not None
    out = enc.encode(["a red square moving right", "a circle"], use_attention_mask=True)
    with torch.no_grad():
        want = ref(input_ids=out.input_ids, attention_mask=out.attention_mask).last_hidden_state
    assert out.last_hidden_state.shape == (2, 16, cfg.d_model)
    assert (out.last_hidden_state - want).abs().max().item() <= 1e-4


def test_full_size_official_keys():
    """The 242 tensors of Wan's UMT5-XXL encoder (from the Wan team's T5Encoder, tests/fixtures/wan) map
    one to one onto transformers' UMT5EncoderModel at the umt5-xxl preset (meta device)."""
    official = json.loads(gzip.open(FIXTURES / "official_keys.json.gz", "rt").read())["umt5_xxl_encoder"]
    cfg = T5EncoderConfig.preset("umt5-xxl")
    with torch.device("meta"):
        model = UMT5EncoderModel(cfg.to_transformers())
    mapped = official_to_transformers({k: torch.empty(v, device="meta") for k, v in official.items()})
    want = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert {k: tuple(v.shape) for k, v in mapped.items()} == want
    with pytest.raises(ConversionError, match="does not know"):
        official_to_transformers({"token_embedding.weight": torch.zeros(1), "blocks.0.attn.x.weight": torch.zeros(1)})

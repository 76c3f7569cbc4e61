"""Small real-format tokenizers for offline tests, trained in memory on a few sentences.

Real tokenizers come from the hub; tests must not download them. These helpers train tiny ones
with the `tokenizers` / `sentencepiece` libraries and write them in the on-disk layout the real
releases use, so the real loading code (transformers' CLIPTokenizer / T5Tokenizer through
utils.encoders) reads them:

- `write_clip_tokenizer(folder)`: vocab.json + merges.txt (+ special_tokens_map.json,
  tokenizer_config.json) of a byte-level BPE with the `</w>` end-of-word suffix, like
  openai/clip-vit-large-patch14. The vocabulary has exactly `vocab_size` entries and, as in CLIP,
  `<|startoftext|>` and `<|endoftext|>` are its last two ids, so eos is the largest id.
- `write_t5_tokenizer(folder, fmt="spiece")`: a SentencePiece unigram model as spiece.model (like
  google/t5-v1_1-xxl) or as tokenizer.json; pad=0, eos=1, unk=2, plus T5's 100 `<extra_id_N>`.

Both return a `TokenizerInfo` with the ids a matching tiny text-encoder config needs.
"""
from __future__ import annotations

import io
import json
from dataclasses import dataclass
from pathlib import Path

SENTENCES = (
    "a photograph of an astronaut riding a horse on the moon",
    "a watercolor painting of a red fox in a snowy forest at dawn",
    "an oil painting of a lighthouse on a cliff during a storm, dramatic lighting",
    "a cute corgi wearing sunglasses sitting on a beach, highly detailed, 4k",
    "a bowl of ramen with eggs and green onions, studio photo",
    "the city skyline at night with neon signs and rain reflections",
    "a portrait of an old man with a grey beard, charcoal drawing",
    "an isometric illustration of a tiny house with a garden and a cat",
    "a close up of a blue butterfly on a yellow flower",
    "a futuristic car driving through a desert canyon at sunset",
)

CLIP_BOS, CLIP_EOS = "<|startoftext|>", "<|endoftext|>"


@dataclass(frozen=True)
class TokenizerInfo:
    folder: Path
    vocab_size: int
    bos_id: int | None
    eos_id: int
    pad_id: int


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2/CLIP's reversible map from bytes to printable unicode characters."""
    keep = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    chars = keep[:]
    extra = 0
    for b in range(256):
        if b not in keep:
            keep.append(b)
            chars.append(256 + extra)
            extra += 1
    return dict(zip(keep, (chr(c) for c in chars)))


def write_clip_tokenizer(folder: str | Path, vocab_size: int = 1000, pad_token: str = CLIP_EOS,
                         model_max_length: int = 77, sentences: tuple[str, ...] = SENTENCES) -> TokenizerInfo:
    """Train a CLIP-style BPE on `sentences`; write vocab.json + merges.txt into `folder`.

    `pad_token`: '<|endoftext|>' as in CLIP-L's tokenizer, or '!' as in SDXL's tokenizer_2 (bigG).
    """
    from tokenizers import Regex, Tokenizer, models, normalizers, pre_tokenizers, trainers

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    alphabet = list(_bytes_to_unicode().values())
    base = alphabet + [c + "</w>" for c in alphabet]
    budget = vocab_size - len(base) - 2
    if budget < 1:
        raise ValueError(f"vocab_size must exceed {len(base) + 2} (the byte alphabet and two special tokens)")

    tok = Tokenizer(models.BPE(continuing_subword_prefix="", end_of_word_suffix="</w>"))
    tok.normalizer = normalizers.Sequence([normalizers.NFC(), normalizers.Replace(Regex(r"\s+"), " "),
                                           normalizers.Lowercase()])
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(r"""'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+"""),
                             behavior="removed", invert=True),
        pre_tokenizers.ByteLevel(add_prefix_space=False),
    ])
    trainer = trainers.BpeTrainer(vocab_size=len(base) + budget, initial_alphabet=alphabet,
                                  end_of_word_suffix="</w>", show_progress=False, special_tokens=[])
    tok.train_from_iterator(list(sentences), trainer=trainer)
    merges = json.loads(tok.to_str())["model"]["merges"]
    merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in merges][:budget]

    vocab: dict[str, int] = {}
    for token in base + ["".join(m) for m in merges]:
        vocab.setdefault(token, len(vocab))
    filler = 0
    while len(vocab) < vocab_size - 2:  # unreachable placeholders keep the specials at the top ids
        vocab[f"<|unused{filler}|>"] = len(vocab)
        filler += 1
    vocab[CLIP_BOS] = vocab_size - 2
    vocab[CLIP_EOS] = vocab_size - 1

    (folder / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False))
    (folder / "merges.txt").write_text("#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in merges), encoding="utf-8")
    specials = {"bos_token": CLIP_BOS, "eos_token": CLIP_EOS, "unk_token": CLIP_EOS, "pad_token": pad_token}
    (folder / "special_tokens_map.json").write_text(json.dumps(specials))
    (folder / "tokenizer_config.json").write_text(json.dumps(
        {**specials, "model_max_length": model_max_length, "do_lower_case": True,
         "tokenizer_class": "CLIPTokenizer"}))
    pad_id = vocab[pad_token] if pad_token in vocab else _bytes_to_unicode_index(pad_token, vocab)
    return TokenizerInfo(folder, vocab_size, vocab[CLIP_BOS], vocab[CLIP_EOS], pad_id)


def _bytes_to_unicode_index(token: str, vocab: dict[str, int]) -> int:
    if token not in vocab:
        raise ValueError(f"pad token {token!r} is not in the vocabulary")
    return vocab[token]


def _train_spiece(sentences: tuple[str, ...], vocab_size: int) -> bytes:
    import sentencepiece as spm

    buf = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(sentences), model_writer=buf, vocab_size=vocab_size, model_type="unigram",
        pad_id=0, eos_id=1, unk_id=2, bos_id=-1, hard_vocab_limit=False, character_coverage=1.0,
        minloglevel=2,
    )
    return buf.getvalue()


def write_t5_tokenizer(folder: str | Path, fmt: str = "spiece", vocab_size: int = 120,
                       model_max_length: int = 512, sentences: tuple[str, ...] = SENTENCES) -> TokenizerInfo:
    """Train a SentencePiece unigram model; write it as spiece.model (fmt='spiece') or tokenizer.json.

    The loaded tokenizer has the SentencePiece pieces plus T5's 100 sentinel tokens, so a matching
    encoder needs `info.vocab_size` embeddings (T5-XXL's is 32128 for 32000 + 100 + padding).
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    model = _train_spiece(sentences, vocab_size)
    config = {"eos_token": "</s>", "unk_token": "<unk>", "pad_token": "<pad>", "extra_ids": 100,
              "model_max_length": model_max_length, "tokenizer_class": "T5Tokenizer", "legacy": True}
    if fmt == "spiece":
        (folder / "spiece.model").write_bytes(model)
    elif fmt in ("json", "tokenizer.json"):
        import sentencepiece as spm
        from transformers import T5Tokenizer

        proc = spm.SentencePieceProcessor(model_proto=model)
        pieces = [(proc.id_to_piece(i), float(proc.get_score(i))) for i in range(proc.get_piece_size())]
        pieces += [(f"<extra_id_{i}>", 0.0) for i in range(99, -1, -1)]
        T5Tokenizer(vocab=pieces, extra_ids=100).backend_tokenizer.save(str(folder / "tokenizer.json"))
    else:
        raise ValueError(f"fmt must be 'spiece' or 'json', got {fmt!r}")
    (folder / "tokenizer_config.json").write_text(json.dumps(config))
    (folder / "special_tokens_map.json").write_text(json.dumps(
        {k: config[k] for k in ("eos_token", "unk_token", "pad_token")}))
    import sentencepiece as spm

    n = spm.SentencePieceProcessor(model_proto=model).get_piece_size()
    return TokenizerInfo(folder, n + 100, None, 1, 0)


__all__ = ["SENTENCES", "TokenizerInfo", "write_clip_tokenizer", "write_t5_tokenizer"]

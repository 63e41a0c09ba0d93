#!/usr/bin/env python3
"""Build tiny random Idefics3 (SmolVLM / SmolDocling / granite-docling family) test fixtures for docfleet.

Everything is created locally and deterministically (no Hugging Face hub access):

  1. a byte-level BPE tokenizer (trained on an embedded, generated corpus) carrying the Idefics3 special
     tokens (`<fake_token_around_image>`, `<image>`, `<global-img>`, `<row_R_col_C>`, `<end_of_utterance>`),
     and SmolVLM's chat template;
  2. a tiny randomly initialised `Idefics3ForConditionalGeneration` (SigLIP-style vision tower + connector +
     Llama text model with grouped-query attention), seeded; the seed is chosen by a search (`--search`)
     for a model whose greedy outputs are not degenerate;
  3. the three ONNX graphs with the names, dtypes and shapes of the published onnx-community /
     transformers.js exports (`onnx/vision_encoder.onnx`, `onnx/embed_tokens.onnx`,
     `onnx/decoder_model_merged.onnx`), each checked against torch;
  4. preprocessing references (`Idefics3Processor` pixel tensors and expanded prompts for awkward page
     sizes, splitting on and off) and greedy `model.generate` references (single page, batched with left
     padding, splitting on/off, a long prompt), re-checked with a plain numpy + onnxruntime greedy loop.

Usage (see tests/fixtures/vlm/idefics3/README.md):

    ~/.cache/docfleet/vlm-venv/bin/python scripts/vlm/make_idefics3.py            # the committed fixtures
    ~/.cache/docfleet/vlm-venv/bin/python scripts/vlm/make_idefics3.py --search   # re-run the seed search
    ~/.cache/docfleet/vlm-venv/bin/python scripts/vlm/make_idefics3.py --bench DIR  # SmolVLM-256M-sized, random

Writes only under tests/fixtures/vlm/idefics3/ (or DIR for --bench).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import random
import shutil
import sys
from pathlib import Path

if os.environ.get("PYTHONHASHSEED") != "0":
    os.environ["PYTHONHASHSEED"] = "0"
    os.execv(sys.executable, [sys.executable, *sys.argv])

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import warnings  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402
from PIL import Image, ImageDraw, ImageFont  # noqa: E402
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers  # noqa: E402

warnings.filterwarnings("ignore")

REPO = Path(__file__).resolve().parents[2]
FIXTURES = REPO / "tests" / "fixtures" / "vlm" / "idefics3"

# ----------------------------------------------------------------------------------------------
# Fixed choices (change them and the fixtures change).
# ----------------------------------------------------------------------------------------------
CORPUS_SEED = 1515
IMAGE_SEED = 5151
VOCAB_SIZE = 576  # BPE vocabulary incl. the special tokens below

# SmolVLM's special tokens (same strings, smaller ids).  <|im_end|> is pad and one of the two stop
# tokens, <end_of_utterance> the other (SmolVLM-256M-Instruct's generation_config has eos [2, 49279]).
BASE_SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]  # 0 unk, 1 bos, 2 pad/eos
IDEFICS_SPECIALS = ["<fake_token_around_image>", "<image>", "<global-img>", "<end_of_utterance>"]
ROW_COL = [f"<row_{r}_col_{c}>" for r in range(1, 7) for c in range(1, 7)]
SPECIALS = BASE_SPECIALS + IDEFICS_SPECIALS + ROW_COL  # ids 0..42
UNK_ID, BOS_ID, PAD_ID = 0, 1, 2
FAKE_ID, IMAGE_ID, GLOBAL_ID, EOU_ID = 3, 4, 5, 6
EOS_IDS = [PAD_ID, EOU_ID]

# Vision: the graph input is [batch, num_images, 3, S, S] with S = max_image_size.longest_edge =
# vision image_size.  The published models use S = 512, patch 16, scale_factor 4 (SmolVLM-256M) →
# image_seq_len 64.  Here S = 32, patch 4, scale_factor 2 → (32/4)²/2² = 16 image tokens per tile: the
# same code paths (position bucketing, pixel shuffle) at 1/256 of the pixels, so that the pixel
# references stay small.  size.longest_edge = 4·S as in the real configs (2048 = 4·512), so pages are
# split into up to 4×4 tiles plus the global image.
TILE = 32
PATCH = 4
SCALE_FACTOR = 2
LONGEST_EDGE = 4 * TILE
IMAGE_SEQ_LEN = (TILE // PATCH) ** 2 // SCALE_FACTOR**2  # 16
VISION = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2)
TEXT = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
            num_key_value_heads=2, max_position_embeddings=2048, rope_theta=100000.0, rms_norm_eps=1e-5)

MAX_NEW_TOKENS = 24
TASK_PROMPT = "Convert this page to docling."

# Seed search: (seed, init std).  CHOSEN is what the committed fixtures use; `--search` re-derives it.
CHOSEN = (3, 0.35)
SEEDS = list(range(0, 60))
INIT_STDS = [0.5, 0.35, 0.25]
EOS_BIAS = 0.5
MIN_MARGIN = 3e-3  # torch vs onnxruntime logits differ by ~2e-5 here

# The chat template of HuggingFaceTB/SmolVLM-256M-Instruct (and SmolDocling-256M-preview), as text.
CHAT_TEMPLATE = (
    "<|im_start|>{% for message in messages %}{{message['role'] | capitalize}}"
    "{% if message['content'][0]['type'] == 'image' %}{{':'}}{% else %}{{': '}}{% endif %}"
    "{% for line in message['content'] %}{% if line['type'] == 'text' %}{{line['text']}}"
    "{% elif line['type'] == 'image' %}{{ '<image>' }}{% endif %}{% endfor %}<end_of_utterance>\n"
    "{% endfor %}{% if add_generation_prompt %}{{ 'Assistant:' }}{% endif %}"
)


def log(*a):
    print(*a, file=sys.stderr, flush=True)


def sha256_file(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


def seed_all(seed: int):
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


# ----------------------------------------------------------------------------------------------
# 1. Corpus + tokenizer
# ----------------------------------------------------------------------------------------------
WORDS = ("invoice receipt document page table figure order payment customer account report letter form "
         "contract number date amount price item header footer caption section title paragraph list code "
         "formula picture chart cell row column total summary result method abstract introduction").split()
TAGS = ("doctag text title section_header_level_1 paragraph list_item ordered_list unordered_list caption "
        "footnote page_header page_footer code formula picture chart otsl fcel ecel lcel ucel xcel nl ched "
        "rhed srow").split()


def build_corpus() -> list[str]:
    rng = random.Random(CORPUS_SEED)
    lines = []
    for _ in range(600):
        k = rng.randrange(4)
        if k == 0:
            tag = rng.choice(TAGS)
            locs = "".join(f"<loc_{rng.randrange(500)}>" for _ in range(4))
            words = " ".join(rng.choice(WORDS) for _ in range(rng.randrange(2, 8)))
            lines.append(f"<{tag}>{locs}{words.capitalize()}.</{tag}>")
        elif k == 1:
            lines.append(f"User: {TASK_PROMPT} Assistant: {rng.choice(WORDS)} {rng.randint(1, 999)}")
        elif k == 2:
            lines.append(" ".join(rng.choice(WORDS) for _ in range(rng.randrange(3, 12))).capitalize() + ".")
        else:
            lines.append(f"Total: ${rng.randint(1, 9999)}.{rng.randint(0, 99):02d} ({rng.choice(WORDS)})")
    return lines


def train_tokenizer() -> Tokenizer:
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=VOCAB_SIZE, min_frequency=2, special_tokens=SPECIALS,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(build_corpus(), trainer=trainer)
    for i, t in enumerate(SPECIALS):
        assert tok.token_to_id(t) == i, (t, tok.token_to_id(t))
    assert tok.get_vocab_size() == VOCAB_SIZE, tok.get_vocab_size()
    return tok


def make_processor():
    from transformers import Idefics3ImageProcessor, Idefics3Processor, PreTrainedTokenizerFast

    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=train_tokenizer(),
        bos_token="<|im_start|>", eos_token="<end_of_utterance>", pad_token="<|im_end|>",
        unk_token="<|endoftext|>",
        additional_special_tokens=IDEFICS_SPECIALS + ROW_COL,
        model_max_length=TEXT["max_position_embeddings"],
        clean_up_tokenization_spaces=False,
        padding_side="left",
        model_input_names=["input_ids", "attention_mask"],
    )
    image_processor = Idefics3ImageProcessor(
        do_convert_rgb=True, do_resize=True, size={"longest_edge": LONGEST_EDGE}, resample=Image.LANCZOS,
        do_image_splitting=True, max_image_size={"longest_edge": TILE}, do_rescale=True,
        rescale_factor=1 / 255, do_normalize=True, image_mean=[0.5, 0.5, 0.5], image_std=[0.5, 0.5, 0.5],
        do_pad=True,
    )
    proc = Idefics3Processor(image_processor=image_processor, tokenizer=tokenizer, image_seq_len=IMAGE_SEQ_LEN,
                             chat_template=CHAT_TEMPLATE)
    assert len(tokenizer) == VOCAB_SIZE, len(tokenizer)  # the processor's add_special_tokens added nothing
    assert proc.image_token_id == IMAGE_ID
    return proc


# ----------------------------------------------------------------------------------------------
# 2. Pages
# ----------------------------------------------------------------------------------------------
def _font():
    if hasattr(ImageFont, "load_default_imagefont"):
        return ImageFont.load_default_imagefont()
    return ImageFont.load_default()


def _page(w: int, h: int, rng, mode="RGB", bg=(255, 255, 255)) -> Image.Image:
    """A page-like image: white background, a title bar, text lines, a table grid, a coloured figure."""
    im = Image.new("RGB", (w, h), bg)
    d = ImageDraw.Draw(im)
    font = _font()
    u = max(1, min(w, h) // 40)
    y = 2 * u
    d.rectangle((2 * u, y, w - 2 * u, y + 3 * u), fill=(30, 30, 120))
    y += 5 * u
    while y < h * 0.55:
        x1 = int(w * rng.uniform(0.5, 0.95))
        d.rectangle((2 * u, y, x1, y + max(1, u)), fill=(40, 40, 40))
        if u >= 6:
            d.text((2 * u, y - 12), "Total 12.50 page %d" % rng.integers(1, 99), fill=(0, 0, 0), font=font)
        y += 3 * u
    t0 = int(h * 0.6)
    for i in range(5):
        yy = t0 + i * int(h * 0.06)
        d.line((2 * u, yy, w - 2 * u, yy), fill=(0, 0, 0), width=max(1, u // 3))
    for j in range(4):
        xx = 2 * u + j * (w - 4 * u) // 3
        d.line((xx, t0, xx, t0 + 4 * int(h * 0.06)), fill=(0, 0, 0), width=max(1, u // 3))
    d.ellipse((int(w * 0.6), int(h * 0.88), int(w * 0.8), int(h * 0.97)), fill=(200, 60, 30))
    if w * h <= 100_000:  # scanner noise on the small pages only (it would make the big PNGs incompressible)
        arr = np.asarray(im).astype(np.int16)
        arr = np.clip(arr + rng.integers(-6, 7, size=arr.shape), 0, 255).astype(np.uint8)
        im = Image.fromarray(arr, "RGB")
    return im.convert(mode) if mode != "RGB" else im


def make_pages() -> dict[str, Image.Image]:
    rng = np.random.default_rng(IMAGE_SEED)
    pages = {
        "a4_150dpi": _page(1240, 1754, rng),  # A4 at 150 dpi (w × h)
        "landscape": _page(900, 600, rng),
        "tiny": _page(20, 30, rng),  # upscaled to longest_edge by the processor
        "strip_wide": _page(400, 60, rng),  # 1×N tiles
        "strip_tall": _page(60, 400, rng),  # N×1 tiles
        "exact": _page(LONGEST_EDGE, TILE * 3, rng),  # longest edge = size, sides multiples of the tile: no resize
    }
    return pages


def grayscale_page() -> Image.Image:
    """A mode "L" page: transformers 4.57's Idefics3ImageProcessor cannot preprocess it (error case)."""
    return _page(200, 300, np.random.default_rng(IMAGE_SEED + 1), mode="L")


# ----------------------------------------------------------------------------------------------
# 3. Model
# ----------------------------------------------------------------------------------------------
def model_config(tiny=True):
    from transformers import Idefics3Config

    if tiny:
        vision = dict(VISION, image_size=TILE, patch_size=PATCH)
        text = dict(TEXT, vocab_size=VOCAB_SIZE)
        scale = SCALE_FACTOR
    else:  # HuggingFaceTB/SmolVLM-256M-Instruct's sizes
        vision = dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12,
                      image_size=512, patch_size=16)
        text = dict(hidden_size=576, intermediate_size=1536, num_hidden_layers=30, num_attention_heads=9,
                    num_key_value_heads=3, max_position_embeddings=8192, rope_theta=100000.0,
                    rms_norm_eps=1e-5, vocab_size=49280)
        scale = 4
    return Idefics3Config(
        vision_config=dict(vision, model_type="idefics3_vision", num_channels=3, hidden_act="gelu_pytorch_tanh",
                           layer_norm_eps=1e-6, attention_dropout=0.0),
        text_config=dict(text, model_type="llama", hidden_act="silu", attention_bias=False, mlp_bias=False,
                         bos_token_id=BOS_ID, eos_token_id=EOS_IDS, pad_token_id=PAD_ID,
                         tie_word_embeddings=False, head_dim=text["hidden_size"] // text["num_attention_heads"]),
        scale_factor=scale, image_token_id=IMAGE_ID, pad_token_id=PAD_ID, bos_token_id=BOS_ID,
        eos_token_id=EOS_IDS, tie_word_embeddings=False, use_cache=True,
    )


def build_model(seed: int, std: float, tiny=True):
    from transformers import Idefics3ForConditionalGeneration

    seed_all(seed)
    cfg = model_config(tiny)
    cfg._attn_implementation = "eager"
    model = Idefics3ForConditionalGeneration(cfg).eval()
    if tiny:
        g = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            for name, p in model.named_parameters():
                if p.dim() >= 2:
                    fan_in = p.shape[1] if "embed" not in name else 1
                    scale = std if "embed" in name else std * math.sqrt(16.0 / fan_in) * 2
                    p.copy_(torch.randn(p.shape, generator=g) * scale)
                elif "norm" in name or "layernorm" in name:
                    p.copy_(1.0 + 0.1 * torch.randn(p.shape, generator=g))
                else:
                    p.copy_(0.05 * torch.randn(p.shape, generator=g))
            # Make the stop tokens reachable: EOS logits get a bias-like boost through the lm_head row norm.
            for t in EOS_IDS:
                model.lm_head.weight[t] *= 1.0 + EOS_BIAS
    model.generation_config.update(**generation_config_dict())
    return model


def generation_config_dict():
    return {"bos_token_id": BOS_ID, "eos_token_id": EOS_IDS, "pad_token_id": PAD_ID,
            "max_new_tokens": MAX_NEW_TOKENS, "do_sample": False, "use_cache": True}


# ----------------------------------------------------------------------------------------------
# 4. ONNX wrappers
# ----------------------------------------------------------------------------------------------
class VisionEncoder(torch.nn.Module):
    """pixel_values [B, N, 3, S, S] f32 + pixel_attention_mask [B, N, S, S] bool → [B·N, image_seq_len, hidden].

    Same computation as Idefics3Model.get_image_features, with two changes an exported graph needs:
    - all B·N images are encoded; transformers drops all-zero (padding) images first, the caller of this
      graph drops their rows instead (a padding image has an all-false pixel_attention_mask);
    - the per-image Python loop of Idefics3VisionEmbeddings (patch position bucketing) is vectorised with
      the same float32 arithmetic (idx / n · (1 − 1e-6), bucket = number of boundaries ≤ x).
    """

    def __init__(self, model):
        super().__init__()
        m = model.model
        self.vision = m.vision_model
        self.connector = m.connector
        self.patch = m.config.vision_config.patch_size
        emb = self.vision.embeddings
        self.nps = emb.num_patches_per_side
        self.register_buffer("boundaries", torch.arange(1 / self.nps, 1.0, 1 / self.nps), persistent=False)

    def forward(self, pixel_values, pixel_attention_mask):
        b, n, c, h, w = pixel_values.shape
        pv = pixel_values.reshape(b * n, c, h, w)
        mask = pixel_attention_mask.reshape(b * n, h, w)
        p = self.patch
        ph, pw = h // p, w // p
        patch_mask = mask.reshape(b * n, ph, p, pw, p).to(torch.int32).sum(dim=(2, 4)) > 0  # [BN, ph, pw]
        emb = self.vision.embeddings
        x = emb.patch_embedding(pv).flatten(2).transpose(1, 2)
        nb_h = patch_mask[:, :, 0].to(torch.int64).sum(-1)  # [BN]
        nb_w = patch_mask[:, 0, :].to(torch.int64).sum(-1)
        hi = torch.arange(ph, dtype=torch.float32)[None, :]
        wi = torch.arange(pw, dtype=torch.float32)[None, :]
        fh = hi / nb_h[:, None] * (1 - 1e-6)
        fw = wi / nb_w[:, None] * (1 - 1e-6)
        bh = (fh[:, :, None] >= self.boundaries).to(torch.int64).sum(-1)  # bucketize(right=True)
        bw = (fw[:, :, None] >= self.boundaries).to(torch.int64).sum(-1)
        pos = bh[:, :, None] * self.nps + bw[:, None, :]
        pos = torch.where(patch_mask, pos, torch.zeros_like(pos)).reshape(b * n, ph * pw)
        x = x + emb.position_embedding(pos)
        flat = patch_mask.reshape(b * n, ph * pw)
        neg = torch.finfo(x.dtype).min
        attn = torch.where(flat[:, None, None, :], torch.zeros((), dtype=x.dtype),
                           torch.full((), neg, dtype=x.dtype)).expand(b * n, 1, ph * pw, ph * pw)
        hs = self.vision.encoder(inputs_embeds=x, attention_mask=attn).last_hidden_state
        hs = self.vision.post_layernorm(hs)
        return self.connector(hs)


class EmbedTokens(torch.nn.Module):
    def __init__(self, model):
        super().__init__()
        self.embed = model.model.text_model.embed_tokens

    def forward(self, input_ids):
        return self.embed(input_ids)


class Decoder(torch.nn.Module):
    """inputs_embeds, attention_mask [B, past+S] i64, position_ids [B, S] i64, past k/v per layer
    → logits [B, S, vocab], present k/v [B, kv_heads, past+S, head_dim].

    The 4-D additive mask (causal AND attention_mask, 0 / float32 min) is built here the way
    transformers' eager mask does it, so a row whose keys are all masked (a left-padding position)
    attends uniformly instead of producing NaN.
    """

    def __init__(self, model):
        super().__init__()
        self.text = model.model.text_model
        self.lm_head = model.lm_head
        self.n_layers = model.config.text_config.num_hidden_layers

    def forward(self, inputs_embeds, attention_mask, position_ids, *past):
        from transformers.cache_utils import DynamicCache

        cache = DynamicCache()
        for i in range(self.n_layers):
            cache.update(past[2 * i], past[2 * i + 1], i)
        s = inputs_embeds.shape[1]
        total = attention_mask.shape[1]
        past_len = total - s
        q = torch.arange(s)[:, None] + past_len
        k = torch.arange(total)[None, :]
        allowed = (k <= q)[None, None, :, :] & (attention_mask[:, None, None, :] > 0)
        neg = torch.finfo(inputs_embeds.dtype).min
        mask4d = torch.where(allowed, torch.zeros((), dtype=inputs_embeds.dtype),
                             torch.full((), neg, dtype=inputs_embeds.dtype))
        out = self.text(inputs_embeds=inputs_embeds, attention_mask=mask4d, position_ids=position_ids,
                        past_key_values=cache, use_cache=True)
        logits = self.lm_head(out.last_hidden_state)
        presents = []
        for layer in out.past_key_values.layers:
            presents += [layer.keys, layer.values]
        return (logits, *presents)


def export_onnx(model, out: Path, check=True) -> dict:
    """Export the three graphs; return the max |torch − onnxruntime| per graph."""
    import onnxruntime as ort

    onnx_dir = out / "onnx"
    onnx_dir.mkdir(parents=True, exist_ok=True)
    cfg = model.config
    tc = cfg.text_config
    n_layers, kvh = tc.num_hidden_layers, tc.num_key_value_heads
    hd = tc.head_dim
    S = cfg.vision_config.image_size
    g = torch.Generator().manual_seed(7)
    diffs = {}

    # vision_encoder
    ve = VisionEncoder(model).eval()
    pv = torch.randn(2, 2, 3, S, S, generator=g)
    pm = torch.ones(2, 2, S, S, dtype=torch.bool)
    with torch.no_grad():
        torch.onnx.export(ve, (pv, pm), str(onnx_dir / "vision_encoder.onnx"),
                          input_names=["pixel_values", "pixel_attention_mask"], output_names=["image_features"],
                          dynamic_axes={"pixel_values": {0: "batch_size", 1: "num_images"},
                                        "pixel_attention_mask": {0: "batch_size", 1: "num_images"},
                                        "image_features": {0: "batch_size_x_num_images"}},
                          opset_version=17, dynamo=False, do_constant_folding=True)
    _fix_output_dim(onnx_dir / "vision_encoder.onnx", 1, (S // cfg.vision_config.patch_size) ** 2 // cfg.scale_factor**2)
    # embed_tokens
    et = EmbedTokens(model).eval()
    ids = torch.randint(0, tc.vocab_size, (2, 5), generator=g)
    with torch.no_grad():
        torch.onnx.export(et, (ids,), str(onnx_dir / "embed_tokens.onnx"), input_names=["input_ids"],
                          output_names=["inputs_embeds"],
                          dynamic_axes={"input_ids": {0: "batch_size", 1: "sequence_length"},
                                        "inputs_embeds": {0: "batch_size", 1: "sequence_length"}},
                          opset_version=17, dynamo=False)
    # decoder_model_merged
    dec = Decoder(model).eval()
    B, s, past = 2, 3, 4
    emb = torch.randn(B, s, tc.hidden_size, generator=g)
    am = torch.ones(B, past + s, dtype=torch.int64)
    pos = torch.arange(past, past + s)[None, :].repeat(B, 1)
    pkv = [torch.randn(B, kvh, past, hd, generator=g) for _ in range(2 * n_layers)]
    in_names = ["inputs_embeds", "attention_mask", "position_ids"]
    out_names = ["logits"]
    dyn = {"inputs_embeds": {0: "batch_size", 1: "sequence_length"},
           "attention_mask": {0: "batch_size", 1: "total_sequence_length"},
           "position_ids": {0: "batch_size", 1: "sequence_length"},
           "logits": {0: "batch_size", 1: "sequence_length"}}
    for i in range(n_layers):
        for kv in ("key", "value"):
            in_names.append(f"past_key_values.{i}.{kv}")
            out_names.append(f"present.{i}.{kv}")
            dyn[f"past_key_values.{i}.{kv}"] = {0: "batch_size", 2: "past_sequence_length"}
            dyn[f"present.{i}.{kv}"] = {0: "batch_size", 2: "total_sequence_length"}
    with torch.no_grad():
        torch.onnx.export(dec, (emb, am, pos, *pkv), str(onnx_dir / "decoder_model_merged.onnx"),
                          input_names=in_names, output_names=out_names, dynamic_axes=dyn, opset_version=17,
                          dynamo=False, do_constant_folding=True)
    if not check:
        return diffs

    so = ort.SessionOptions()
    so.log_severity_level = 3
    sess = {n: ort.InferenceSession(str(onnx_dir / f"{n}.onnx"), so, providers=["CPUExecutionProvider"])
            for n in ("vision_encoder", "embed_tokens", "decoder_model_merged")}
    with torch.no_grad():
        # vision: other batch/num_images than traced, one padding image, against get_image_features
        pv = torch.randn(1, 3, 3, S, S, generator=g)
        pm = torch.ones(1, 3, S, S, dtype=torch.bool)
        pv[0, 2] = 0
        pm[0, 2] = False
        ref = model.model.get_image_features(pv, pm)  # drops the padding image
        got = sess["vision_encoder"].run(None, {"pixel_values": pv.numpy(), "pixel_attention_mask": pm.numpy()})[0]
        assert got.shape == (3, ref.shape[1], ref.shape[2]), got.shape
        assert np.isfinite(got).all()
        diffs["vision_encoder"] = float(np.abs(got[:2] - ref.numpy()).max())
        # embed
        ids = torch.randint(0, tc.vocab_size, (3, 7), generator=g)
        got = sess["embed_tokens"].run(None, {"input_ids": ids.numpy()})[0]
        diffs["embed_tokens"] = float(np.abs(got - et(ids).numpy()).max())
        # decoder: prefill with past 0 and left padding, then one cache step, against the text model
        B, s = 3, 6
        emb = torch.randn(B, s, tc.hidden_size, generator=g)
        am = torch.ones(B, s, dtype=torch.int64)
        am[1, :2] = 0
        pos = (am.cumsum(-1) - 1).masked_fill(am == 0, 1)
        feeds = {"inputs_embeds": emb.numpy(), "attention_mask": am.numpy(), "position_ids": pos.numpy()}
        for i in range(n_layers):
            for kv in ("key", "value"):
                feeds[f"past_key_values.{i}.{kv}"] = np.zeros((B, kvh, 0, hd), np.float32)
        outs = sess["decoder_model_merged"].run(None, feeds)
        ref = model(inputs_embeds=emb, attention_mask=am, position_ids=pos, use_cache=True)
        d = float(np.abs(outs[0] - ref.logits.numpy()).max())
        for i, layer in enumerate(ref.past_key_values.layers):
            d = max(d, float(np.abs(outs[1 + 2 * i] - layer.keys.numpy()).max()))
        emb2 = torch.randn(B, 1, tc.hidden_size, generator=g)
        am2 = torch.cat([am, torch.ones(B, 1, dtype=torch.int64)], 1)
        pos2 = am2.sum(-1, keepdim=True) - 1
        feeds = {"inputs_embeds": emb2.numpy(), "attention_mask": am2.numpy(), "position_ids": pos2.numpy()}
        for i in range(n_layers):
            feeds[f"past_key_values.{i}.key"] = outs[1 + 2 * i]
            feeds[f"past_key_values.{i}.value"] = outs[2 + 2 * i]
        outs2 = sess["decoder_model_merged"].run(None, feeds)
        ref2 = model(inputs_embeds=emb2, attention_mask=am2, position_ids=pos2,
                     past_key_values=ref.past_key_values, use_cache=True)
        d = max(d, float(np.abs(outs2[0] - ref2.logits.numpy()).max()))
        diffs["decoder_model_merged"] = d
    for k, v in diffs.items():
        log(f"  onnx vs torch {k}: max |diff| = {v:.2e}")
    return diffs


def _fix_output_dim(path: Path, axis: int, value: int):
    """The pixel-shuffle reshape hides that image_features' dim 1 is image_seq_len: write it down."""
    import onnx

    m = onnx.load(str(path))
    d = m.graph.output[0].type.tensor_type.shape.dim[axis]
    d.Clear()
    d.dim_value = value
    onnx.save(m, str(path))


def onnx_signatures(onnx_dir: Path) -> dict:
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.log_severity_level = 3
    res = {}
    for f in sorted(onnx_dir.glob("*.onnx")):
        s = ort.InferenceSession(str(f), so, providers=["CPUExecutionProvider"])
        res[f.name] = {
            "inputs": [{"name": i.name, "type": i.type, "shape": i.shape} for i in s.get_inputs()],
            "outputs": [{"name": o.name, "type": o.type, "shape": o.shape} for o in s.get_outputs()],
        }
    return res


# ----------------------------------------------------------------------------------------------
# 5. References
# ----------------------------------------------------------------------------------------------
def messages(prompt: str):
    return [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": prompt}]}]


def prepare(proc, pages: list[Image.Image], prompt=TASK_PROMPT, split=True):
    text = proc.apply_chat_template(messages(prompt), add_generation_prompt=True)
    ip = proc.image_processor
    saved, ip.do_image_splitting = ip.do_image_splitting, split  # the processor's call ignores the kwarg
    try:
        enc = proc(text=[text] * len(pages), images=[[p] for p in pages], return_tensors="pt", padding=True)
    finally:
        ip.do_image_splitting = saved
    return text, enc


def greedy_generate(model, inputs):
    with torch.no_grad():
        out = model.generate(**inputs, max_new_tokens=MAX_NEW_TOKENS, do_sample=False, output_scores=True,
                             return_dict_in_generate=True)
    prompt_len = inputs["input_ids"].shape[1]
    seqs = out.sequences[:, prompt_len:].tolist()
    margins = []
    for row in range(len(seqs)):
        m = math.inf
        for step, sc in enumerate(out.scores):
            if step > 0 and seqs[row][step - 1] in EOS_IDS:
                break
            top = torch.topk(sc[row], 2).values
            m = min(m, float(top[0] - top[1]))
        margins.append(m)
    return seqs, margins


def cut_at_eos(ids):
    for k, t in enumerate(ids):
        if t in EOS_IDS:
            return ids[: k + 1], "eos"
    return ids, "length"


class OrtGreedy:
    """A plain numpy + onnxruntime greedy loop over the three graphs: what the Rust side does."""

    def __init__(self, onnx_dir: Path, threads: int = 0, suffix: str = ""):
        import onnxruntime as ort

        so = ort.SessionOptions()
        so.log_severity_level = 3
        if threads:
            so.intra_op_num_threads = threads
            so.inter_op_num_threads = 1
        mk = lambda n: ort.InferenceSession(str(onnx_dir / f"{n}{suffix}.onnx"), so, providers=["CPUExecutionProvider"])  # noqa: E731
        self.vision, self.embed, self.decoder = mk("vision_encoder"), mk("embed_tokens"), mk("decoder_model_merged")
        self.past_names = [i.name for i in self.decoder.get_inputs() if i.name.startswith("past_key_values.")]
        pk = next(i for i in self.decoder.get_inputs() if i.name.startswith("past_key_values."))
        self.kv_heads, self.head_dim = pk.shape[1], pk.shape[3]
        self.dtype = np.float16 if pk.type == "tensor(float16)" else np.float32
        self.pixel_dtype = np.float16 if self.vision.get_inputs()[0].type == "tensor(float16)" else np.float32

    def generate(self, input_ids, attention_mask, pixel_values, pixel_attention_mask, max_new_tokens,
                 eos_ids, pad_id):
        input_ids = np.asarray(input_ids, np.int64)
        mask = np.asarray(attention_mask, np.int64)
        B = input_ids.shape[0]
        feats = self.vision.run(None, {"pixel_values": np.asarray(pixel_values, self.pixel_dtype),
                                       "pixel_attention_mask": np.asarray(pixel_attention_mask, bool)})[0]
        real = np.asarray(pixel_attention_mask, bool).reshape(feats.shape[0], -1).any(-1)
        feats = feats[real].reshape(-1, feats.shape[-1])  # image rows in batch-major order
        emb = self.embed.run(None, {"input_ids": input_ids})[0]
        img = input_ids == IMAGE_ID_RUNTIME[0]
        assert img.sum() == feats.shape[0], (img.sum(), feats.shape)
        emb[img] = feats
        pos = np.where(mask == 0, 1, np.cumsum(mask, -1) - 1)
        past = {n: np.zeros((B, self.kv_heads, 0, self.head_dim), self.dtype) for n in self.past_names}
        done = np.zeros(B, bool)
        out = [[] for _ in range(B)]
        for _ in range(max_new_tokens):
            res = self.decoder.run(None, {"inputs_embeds": emb, "attention_mask": mask, "position_ids": pos, **past})
            nxt = res[0][:, -1, :].argmax(-1)
            nxt = np.where(done, pad_id, nxt)
            for b in range(B):
                out[b].append(int(nxt[b]))
            done |= np.isin(nxt, eos_ids)
            if done.all():
                break
            past = {n: res[1 + k] for k, n in enumerate(self.past_names)}
            emb = self.embed.run(None, {"input_ids": nxt[:, None].astype(np.int64)})[0]
            mask = np.concatenate([mask, np.ones((B, 1), np.int64)], 1)
            pos = mask.sum(-1, keepdims=True) - 1
        return out


IMAGE_ID_RUNTIME = [IMAGE_ID]


def save_npy(path: Path, arr: np.ndarray):
    path.parent.mkdir(parents=True, exist_ok=True)
    np.save(path, np.ascontiguousarray(arr))


def preprocess_references(proc, pages, out: Path) -> dict:
    refs = {}
    ip = proc.image_processor
    for name, im in pages.items():
        for split in (True, False):
            key = f"{name}/{'split' if split else 'nosplit'}"
            text, enc = prepare(proc, [im], split=split)
            pv = enc["pixel_values"].numpy()
            pm = enc["pixel_attention_mask"].numpy()
            assert pm.all(), key  # a single page: every tile is S×S, no padding
            rows_cols = ip(images=[[im]], do_image_splitting=split, return_row_col_info=True)
            fn = f"preprocess/{name}_{'split' if split else 'nosplit'}.npy"
            save_npy(out / fn, pv)
            # the size after the longest_edge resize, and the tile-multiple size (split only)
            w, h = im.size
            from transformers.models.idefics3.image_processing_idefics3 import get_resize_output_image_size
            h1, w1 = get_resize_output_image_size(np.zeros((h, w, 3)), LONGEST_EDGE,
                                                  input_data_format="channels_last")
            refs[key] = {
                "image": f"images/{name}.png",
                "input_wh": [w, h],
                "mode": im.mode,
                "do_image_splitting": split,
                "after_longest_edge_resize_hw": [h1, w1],
                "rows": rows_cols["rows"][0][0],
                "cols": rows_cols["cols"][0][0],
                "pixel_values": fn,
                "pixel_values_shape": list(pv.shape),
                "pixel_attention_mask_shape": list(pm.shape),
                "pixel_attention_mask_all_true": bool(pm.all()),
                "prompt": text,
                "input_ids": enc["input_ids"][0].tolist(),
                "expanded_prompt": proc.tokenizer.decode(enc["input_ids"][0]),
            }
    # a padded batch: pages with different tile counts → all-zero padding images with all-false masks
    names = ["strip_wide", "a4_150dpi"]
    text, enc = prepare(proc, [pages[n] for n in names], split=True)
    pv = enc["pixel_values"].numpy()
    pm = enc["pixel_attention_mask"].numpy()
    save_npy(out / "preprocess/batch_strip_wide_a4_split.npy", pv)
    refs["batch/strip_wide+a4_150dpi/split"] = {
        "pages": names, "do_image_splitting": True,
        "pixel_values": "preprocess/batch_strip_wide_a4_split.npy", "pixel_values_shape": list(pv.shape),
        "pixel_attention_mask_any_per_image": pm.reshape(pm.shape[0], pm.shape[1], -1).any(-1).tolist(),
        "padding_images_all_zero": bool(all((pv[b, i] == 0).all() for b in range(pv.shape[0])
                                            for i in range(pv.shape[1]) if not pm[b, i].any())),
        "input_ids": enc["input_ids"].tolist(), "attention_mask": enc["attention_mask"].tolist(),
    }
    return refs


def error_cases(proc, out: Path) -> dict:
    res = {}
    gray = grayscale_page()
    gray.save(out / "images" / "gray_L.png", optimize=False, compress_level=9)
    try:
        prepare(proc, [gray])
        res["gray_L"] = {"image": "images/gray_L.png", "python": "ok"}
    except Exception as e:  # noqa: BLE001
        res["gray_L"] = {"image": "images/gray_L.png", "python": f"{type(e).__name__}: {e}"}
    # a prompt + image tokens longer than max_position_embeddings: transformers does not check it (RoPE
    # extrapolates); recorded so the Rust side knows the length it must reject
    text, enc = prepare(proc, [make_pages()["a4_150dpi"]], prompt=" ".join(["total"] * 2000))
    res["prompt_too_long"] = {"prompt_words": 2000, "input_len": int(enc["input_ids"].shape[1]),
                              "max_position_embeddings": TEXT["max_position_embeddings"]}
    return res


GEN_CASES = [  # (name, pages, split, prompt)
    ("single/a4_150dpi/split", ["a4_150dpi"], True, TASK_PROMPT),
    ("single/landscape/split", ["landscape"], True, TASK_PROMPT),
    ("single/strip_wide/split", ["strip_wide"], True, TASK_PROMPT),
    ("single/tiny/split", ["tiny"], True, TASK_PROMPT),
    ("single/a4_150dpi/nosplit", ["a4_150dpi"], False, TASK_PROMPT),
    ("single/strip_tall/nosplit", ["strip_tall"], False, TASK_PROMPT),
    ("batch/a4+strip_wide+tiny/split", ["a4_150dpi", "strip_wide", "tiny"], True, TASK_PROMPT),
    ("batch/landscape+strip_tall/nosplit", ["landscape", "strip_tall"], False, TASK_PROMPT),
    ("long_prompt/landscape/split", ["landscape"], True, None),
]


def long_prompt():
    rng = random.Random(99)
    return TASK_PROMPT + " " + " ".join(rng.choice(WORDS) for _ in range(120))


def generation_references(model, proc, pages, onnx_dir: Path | None):
    refs = {}
    single_ids = {}
    for name, pnames, split, prompt in GEN_CASES:
        prompt = prompt if prompt is not None else long_prompt()
        text, enc = prepare(proc, [pages[n] for n in pnames], prompt=prompt, split=split)
        seqs, margins = greedy_generate(model, enc)
        rows = []
        for i, (seq, m) in enumerate(zip(seqs, margins)):
            gen, reason = cut_at_eos(seq)
            rows.append({"page": pnames[i], "generated_ids": gen, "finish_reason": reason, "min_top2_margin": m,
                         "text": proc.tokenizer.decode(gen, skip_special_tokens=True)})
        case = {"pages": pnames, "do_image_splitting": split, "prompt": text,
                "input_ids": enc["input_ids"].tolist(), "attention_mask": enc["attention_mask"].tolist(),
                "pixel_values_shape": list(enc["pixel_values"].shape), "sequences": seqs, "rows": rows}
        if len(pnames) == 1:
            single_ids[(pnames[0], split, prompt)] = rows[0]["generated_ids"]
        else:
            case["matches_single"] = [single_ids.get((p, split, prompt)) == r["generated_ids"]
                                      if (p, split, prompt) in single_ids else None for p, r in zip(pnames, rows)]
        if onnx_dir is not None:
            g = OrtGreedy(onnx_dir).generate(enc["input_ids"].numpy(), enc["attention_mask"].numpy(),
                                             enc["pixel_values"].numpy(), enc["pixel_attention_mask"].numpy(),
                                             MAX_NEW_TOKENS, EOS_IDS, PAD_ID)
            # generate() pads finished rows with pad_token_id up to the longest row
            L = max(len(r) for r in seqs)
            g = [r[:L] for r in g]
            case["onnx_greedy_matches"] = g == seqs
            assert g == seqs, (name, g, seqs)
        refs[name] = case
    return refs


FP16_CASES = ["single/a4_150dpi/split", "single/strip_tall/nosplit", "batch/a4+strip_wide+tiny/split"]


def fp16_variants(onnx_dir: Path) -> dict:
    """`onnx/*_fp16.onnx` as the onnx-community exports ship them: every float initializer, input, output
    and cache in float16 (onnxconverter-common's converter, `keep_io_types=False`). The converter leaves the
    graph's own `Cast(to=FLOAT)` nodes (RMSNorm/softmax upcasts) producing float32 into float16 consumers;
    those are retargeted to float16, as transformers.js' conversion script does."""
    import onnx
    from onnx import TensorProto
    from onnxconverter_common import float16

    fixed = {}
    for g in ("vision_encoder", "embed_tokens", "decoder_model_merged"):
        m = float16.convert_float_to_float16(onnx.load(str(onnx_dir / f"{g}.onnx")), keep_io_types=False)
        n = 0
        for node in m.graph.node:
            if node.op_type == "Cast" and "_input_cast" not in node.name and "_output_cast" not in node.name:
                for a in node.attribute:
                    if a.name == "to" and a.i == TensorProto.FLOAT:
                        a.i = TensorProto.FLOAT16
                        n += 1
        onnx.save(m, str(onnx_dir / f"{g}_fp16.onnx"))
        fixed[g] = n
    return fixed


def fp16_references(proc, pages, onnx_dir: Path) -> dict:
    """Greedy ids of the fp16 graphs, from the numpy + onnxruntime loop (float16 end to end on CPU: its
    outputs differ from the float32 model's, so the fp16 graphs are their own reference)."""
    loop = OrtGreedy(onnx_dir, suffix="_fp16")
    refs = {}
    for name, pnames, split, prompt in GEN_CASES:
        if name not in FP16_CASES:
            continue
        _, enc = prepare(proc, [pages[n] for n in pnames], prompt=prompt, split=split)
        g = loop.generate(enc["input_ids"].numpy(), enc["attention_mask"].numpy(), enc["pixel_values"].numpy(),
                          enc["pixel_attention_mask"].numpy(), MAX_NEW_TOKENS, EOS_IDS, PAD_ID)
        rows = []
        for pn, seq in zip(pnames, g):
            gen, reason = cut_at_eos(seq)
            rows.append({"page": pn, "generated_ids": gen, "finish_reason": reason})
        refs[name] = {"pages": pnames, "do_image_splitting": split, "rows": rows}
    return refs


def check_candidate(model, proc, pages) -> tuple[bool, str]:
    outs, reasons, margins = [], [], []
    for name, pnames, split, prompt in GEN_CASES:
        if len(pnames) != 1:
            continue
        prompt = prompt if prompt is not None else long_prompt()
        _, enc = prepare(proc, [pages[pnames[0]]], prompt=prompt, split=split)
        seqs, m = greedy_generate(model, enc)
        gen, reason = cut_at_eos(seqs[0])
        if len(gen) < 3:
            return False, f"{name}: stops after {len(gen)}"
        if len(set(gen)) < 4:
            return False, f"{name}: degenerate {gen}"
        outs.append(tuple(gen))
        reasons.append(reason)
        margins.append(m[0])
    if len(set(outs)) < len(outs) - 1:
        return False, "outputs do not depend on the page"
    if "eos" not in reasons or "length" not in reasons:
        return False, f"finish reasons {reasons}"
    if min(margins) < MIN_MARGIN:
        return False, f"margin {min(margins):.2e}"
    return True, f"ok reasons={reasons} margin={min(margins):.3e}"


# ----------------------------------------------------------------------------------------------
# main
# ----------------------------------------------------------------------------------------------
def write_model_dir(model, proc, out: Path):
    model.config.save_pretrained(out)
    # generation_config.json: greedy, both stop tokens
    from transformers import GenerationConfig

    GenerationConfig(**generation_config_dict()).save_pretrained(out)
    proc.save_pretrained(out)
    # A chat_template.json variant beside chat_template.jinja (older checkouts of the hub repos ship it).
    (out / "chat_template.json").write_text(json.dumps({"chat_template": CHAT_TEMPLATE}, indent=2) + "\n")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--search", action="store_true")
    ap.add_argument("--bench", metavar="OUTDIR")
    ap.add_argument("--out", default=str(FIXTURES))
    args = ap.parse_args()
    torch.set_num_threads(2)

    if args.bench:
        return make_bench(Path(args.bench))

    out = Path(args.out)
    proc = make_processor()
    pages = make_pages()
    if args.search or CHOSEN[0] is None:
        chosen = None
        for seed in SEEDS:
            for std in INIT_STDS:
                model = build_model(seed, std)
                ok, why = check_candidate(model, proc, pages)
                log(f"seed {seed} std {std}: {why}")
                if ok:
                    chosen = (seed, std)
                    break
            if chosen:
                break
        assert chosen, "no candidate passed"
    else:
        chosen = CHOSEN
    seed, std = chosen
    log(f"model seed {seed}, init std {std}")
    model = build_model(seed, std)

    if out.exists():  # start clean, but keep the hand-written README
        for p in out.iterdir():
            if p.name != "README.md":
                shutil.rmtree(p) if p.is_dir() else p.unlink()
    out.mkdir(parents=True, exist_ok=True)
    (out / "images").mkdir()
    images = {}
    for n, im in pages.items():
        p = out / "images" / f"{n}.png"
        im.save(p, optimize=False, compress_level=9)
        images[n] = {"file": f"images/{n}.png", "wh": list(im.size), "mode": im.mode}
    write_model_dir(model, proc, out)
    diffs = export_onnx(model, out)
    for k, v in diffs.items():
        assert v < 1e-4, (k, v)

    import onnx
    import onnxruntime
    import PIL
    import tokenizers as tk
    import transformers

    ref = {
        "generator": "scripts/vlm/make_idefics3.py",
        "versions": {"python": sys.version.split()[0], "torch": torch.__version__,
                     "transformers": transformers.__version__, "tokenizers": tk.__version__,
                     "onnx": onnx.__version__, "onnxruntime": onnxruntime.__version__, "pillow": PIL.__version__,
                     "numpy": np.__version__},
        "model": {"seed": seed, "init_std": std, "eos_bias": EOS_BIAS,
                  "parameters": sum(p.numel() for p in model.parameters()),
                  "tile": TILE, "patch": PATCH, "scale_factor": SCALE_FACTOR, "longest_edge": LONGEST_EDGE,
                  "image_seq_len": IMAGE_SEQ_LEN, "vision": VISION, "text": TEXT, "vocab_size": VOCAB_SIZE},
        "tokens": {"unk": UNK_ID, "bos": BOS_ID, "pad": PAD_ID, "fake_token_around_image": FAKE_ID,
                   "image": IMAGE_ID, "global_img": GLOBAL_ID, "end_of_utterance": EOU_ID, "eos": EOS_IDS,
                   "row_1_col_1": SPECIALS.index("<row_1_col_1>"), "row_6_col_6": SPECIALS.index("<row_6_col_6>")},
        "max_new_tokens": MAX_NEW_TOKENS,
        "task_prompt": TASK_PROMPT,
        "onnx_vs_torch_max_abs_diff": diffs,
        "onnx_signatures": onnx_signatures(out / "onnx"),
        "images": images,
    }
    ref["preprocess"] = preprocess_references(proc, pages, out)
    ref["error_cases"] = error_cases(proc, out)
    ref["generate"] = generation_references(model, proc, pages, out / "onnx")
    import onnxconverter_common

    ref["versions"]["onnxconverter_common"] = onnxconverter_common.__version__
    ref["fp16_casts_retargeted"] = fp16_variants(out / "onnx")
    ref["generate_fp16"] = fp16_references(proc, pages, out / "onnx")
    files = {}
    for p in sorted(out.rglob("*")):
        if p.is_file() and p.name not in ("reference.json", "README.md"):
            files[str(p.relative_to(out))] = {"bytes": p.stat().st_size, "sha256": sha256_file(p)}
    ref["files"] = files
    (out / "reference.json").write_text(json.dumps(ref, indent=1, ensure_ascii=False) + "\n")
    total = sum(f["bytes"] for f in files.values())
    log(f"wrote {out} ({total / 1e6:.2f} MB + reference.json)")


BENCH_PAGES = {"a4_150dpi": (1240, 1754), "landscape": (1754, 1240), "letter_100dpi": (850, 1100),
               "strip_wide": (1600, 240)}


def make_bench(out: Path):
    """A random model at HuggingFaceTB/SmolVLM-256M-Instruct's sizes (text: hidden 576, 30 layers, 9 heads,
    3 kv heads, head_dim 64, vocabulary 49280; vision: hidden 768, 12 layers, 12 heads, 512 tiles, patch 16;
    scale_factor 4 → image_seq_len 64), transformers' default init, exported the same way. Not committed:
    ~1 GB of fp32 graphs. Also writes the benchmark pages under OUTDIR/pages/."""
    from transformers import Idefics3ImageProcessor

    proc = make_processor()
    model = build_model(0, 0.0, tiny=False)
    out.mkdir(parents=True, exist_ok=True)
    # Processor at the real sizes: 512 tiles, longest_edge 2048, image_seq_len 64; the tiny tokenizer
    # (the model's vocabulary is 49280, the tokenizer's 576 ids are a subset of it).
    proc.image_processor = Idefics3ImageProcessor(
        do_convert_rgb=True, do_resize=True, size={"longest_edge": 2048}, resample=Image.LANCZOS,
        do_image_splitting=True, max_image_size={"longest_edge": 512}, do_rescale=True, rescale_factor=1 / 255,
        do_normalize=True, image_mean=[0.5, 0.5, 0.5], image_std=[0.5, 0.5, 0.5], do_pad=True)
    proc.image_seq_len = 64
    write_model_dir(model, proc, out)
    model.save_pretrained(out / "torch")  # for bench_idefics3_python.py's transformers engine
    (out / "pages").mkdir(exist_ok=True)
    rng = np.random.default_rng(IMAGE_SEED + 2)
    for name, (w, h) in BENCH_PAGES.items():
        _page(w, h, rng).save(out / "pages" / f"{name}.png", compress_level=9)
    log("exporting (a few minutes on 2 cores) …")
    diffs = export_onnx(model, out, check=True)
    (out / "bench_model.json").write_text(json.dumps({
        "generator": "scripts/vlm/make_idefics3.py --bench", "parameters": sum(p.numel() for p in model.parameters()),
        "onnx_vs_torch_max_abs_diff": diffs, "onnx_signatures": onnx_signatures(out / "onnx"),
        "pages": {n: list(wh) for n, wh in BENCH_PAGES.items()}}, indent=1) + "\n")
    log(f"wrote {out}")


if __name__ == "__main__":
    main()

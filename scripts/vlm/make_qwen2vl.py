#!/usr/bin/env python3
"""Build tiny random Qwen2-VL and Qwen2.5-VL test fixtures for docfleet.

Everything is created locally and deterministically (no Hugging Face hub access):

  1. a byte-level BPE tokenizer (trained on an embedded, generated corpus) carrying the Qwen2-VL special
     tokens (`<|endoftext|>`, `<|im_start|>`, `<|im_end|>`, `<|vision_start|>`, `<|vision_end|>`,
     `<|image_pad|>`, `<|video_pad|>`) and Qwen2-VL-Instruct's chat template;
  2. a tiny randomly initialised `Qwen2VLForConditionalGeneration` and `Qwen2_5_VLForConditionalGeneration`
     (vision tower with patch 14, temporal patch 2, spatial merge 2; Qwen2.5's window attention with
     window_size 112 = 4 merged patches; text model with grouped-query attention and M-RoPE), seeded;
  3. the three ONNX graphs with the names, dtypes and shapes of the onnx-community / transformers.js exports:
     `onnx/vision_encoder.onnx` (`pixel_values` [num_patches, 3·2·14·14] f32 and `grid_thw` (Qwen2-VL) or
     `image_grid_thw` (Qwen2.5-VL) [num_images, 3] i64 → `image_features` [num_patches / 4, hidden]),
     `onnx/embed_tokens.onnx` (`input_ids` → `inputs_embeds`) and `onnx/decoder_model_merged.onnx`
     (`inputs_embeds`, `attention_mask`, `position_ids` [3, batch, seq], `past_key_values.{i}.key/value` →
     `logits`, `present.{i}.key/value`), each checked against torch;
  4. references: `Qwen2VLImageProcessor` pixel tensors (sha256 of every tensor, the full tensor for two
     pages, the resized RGB image for every page), prompt ids, `get_rope_index` position ids and
     rope_deltas, and greedy `model.generate` token ids single and batched (left padding, pages of different
     sizes), re-checked with a plain numpy + onnxruntime greedy loop.

Usage (see tests/fixtures/vlm/qwen2vl/README.md):

    ~/.cache/docfleet/vlm-venv/bin/python scripts/vlm/make_qwen2vl.py            # both families
    ~/.cache/docfleet/vlm-venv/bin/python scripts/vlm/make_qwen2vl.py --search   # re-run the seed search

Writes only under tests/fixtures/vlm/qwen2vl/ and tests/fixtures/vlm/qwen2_5vl/.
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
from PIL import Image, ImageDraw  # noqa: E402
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers  # noqa: E402

warnings.filterwarnings("ignore")

sys.path.insert(0, str(Path(__file__).resolve().parent))
import make_idefics3 as idefics3  # noqa: E402  (shared helpers: the decoder wrapper, logging, hashing)
from make_idefics3 import log, messages, save_npy, seed_all, sha256_file  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
FIXTURES = REPO / "tests" / "fixtures" / "vlm"

CORPUS_SEED = 2424
IMAGE_SEED = 4242
VOCAB_SIZE = 512

SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>",
            "<|image_pad|>", "<|video_pad|>"]
ENDOFTEXT_ID, IM_START_ID, IM_END_ID, VISION_START_ID, VISION_END_ID, IMAGE_ID, VIDEO_ID = range(7)
PAD_ID = ENDOFTEXT_ID
EOS_IDS = [IM_END_ID, ENDOFTEXT_ID]  # Qwen2-VL-Instruct's generation_config: [151645, 151643]

PATCH, TEMPORAL, MERGE = 14, 2, 2
FACTOR = PATCH * MERGE  # 28
MIN_PIXELS = 4 * FACTOR * FACTOR  # 3136, as the published configs
MAX_PIXELS = 32 * FACTOR * FACTOR  # 25088: at most 32 image tokens per page here (12845056 published)
MEAN = [0.48145466, 0.4578275, 0.40821073]
STD = [0.26862954, 0.26130258, 0.27577711]

TEXT = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
            num_key_value_heads=2, max_position_embeddings=1024, rope_theta=1000000.0, rms_norm_eps=1e-6)
MROPE_SECTION = [2, 3, 3]  # head_dim 16 → 8 frequencies: t, h, w (published: [16, 24, 24] of 64)
VISION_QWEN2 = dict(depth=2, embed_dim=32, hidden_size=TEXT["hidden_size"], num_heads=2, mlp_ratio=2.0,
                    hidden_act="quick_gelu")
VISION_QWEN25 = dict(depth=4, hidden_size=32, intermediate_size=64, out_hidden_size=TEXT["hidden_size"],
                     num_heads=2, hidden_act="silu", window_size=112, fullatt_block_indexes=[1, 3],
                     tokens_per_second=2)

MAX_NEW_TOKENS = 20
TASK_PROMPT = "Read the text on this page."

FAMILIES = {
    "qwen2vl": {"dir": "qwen2vl", "model_type": "qwen2_vl", "grid_name": "grid_thw", "chosen": (1, 0.35)},
    "qwen2_5vl": {"dir": "qwen2_5vl", "model_type": "qwen2_5_vl", "grid_name": "image_grid_thw",
                  "chosen": (0, 0.5)},
}
SEEDS = list(range(0, 40))
INIT_STDS = [0.5, 0.35, 0.25]
EOS_BIAS = 0.5
MIN_MARGIN = 3e-3

# Qwen/Qwen2-VL-2B-Instruct's chat template (the same text in Qwen2.5-VL-3B-Instruct's), as text.
CHAT_TEMPLATE = (
    "{% set image_count = namespace(value=0) %}{% set video_count = namespace(value=0) %}"
    "{% for message in messages %}{% if loop.first and message['role'] != 'system' %}<|im_start|>system\n"
    "You are a helpful assistant.<|im_end|>\n{% endif %}<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}<|im_end|>\n{% else %}"
    "{% for content in message['content'] %}{% if content['type'] == 'image' or 'image' in content or "
    "'image_url' in content %}{% set image_count.value = image_count.value + 1 %}{% if add_vision_id %}"
    "Picture {{ image_count.value }}: {% endif %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif content['type'] == 'video' or 'video' in content %}{% set video_count.value = video_count.value + 1 %}"
    "{% if add_vision_id %}Video {{ video_count.value }}: {% endif %}<|vision_start|><|video_pad|><|vision_end|>"
    "{% elif 'text' in content %}{{ content['text'] }}{% endif %}{% endfor %}<|im_end|>\n{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


# ----------------------------------------------------------------------------------------------
# 1. Tokenizer and processor
# ----------------------------------------------------------------------------------------------
WORDS = ("invoice receipt document page table figure order payment customer account report letter form "
         "contract number date amount price item header footer caption section title paragraph list code "
         "read text this on the total summary result method abstract introduction system user assistant "
         "helpful you are a").split()


def build_corpus() -> list[str]:
    rng = random.Random(CORPUS_SEED)
    lines = []
    for _ in range(600):
        k = rng.randrange(3)
        if k == 0:
            lines.append(f"<|im_start|>user\n{TASK_PROMPT}<|im_end|>\n<|im_start|>assistant\n{rng.choice(WORDS)}")
        elif k == 1:
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


def make_image_processor(max_pixels=MAX_PIXELS):
    from transformers import Qwen2VLImageProcessor

    return Qwen2VLImageProcessor(
        do_resize=True, resample=Image.BICUBIC, do_rescale=True, rescale_factor=1 / 255, do_normalize=True,
        image_mean=MEAN, image_std=STD, do_convert_rgb=True, min_pixels=MIN_PIXELS, max_pixels=max_pixels,
        patch_size=PATCH, temporal_patch_size=TEMPORAL, merge_size=MERGE)


def make_processor():
    from transformers import Qwen2TokenizerFast, Qwen2VLProcessor

    class ImageOnlyProcessor(Qwen2VLProcessor):
        """Qwen2VLProcessor without its video processor (which needs torchvision); images only."""

        def check_argument_for_proper_class(self, name, arg):
            if name == "video_processor":
                return None
            return super().check_argument_for_proper_class(name, arg)

    tokenizer = Qwen2TokenizerFast(
        tokenizer_object=train_tokenizer(), eos_token="<|im_end|>", pad_token="<|endoftext|>",
        unk_token=None, bos_token=None, additional_special_tokens=SPECIALS[1:],
        model_max_length=TEXT["max_position_embeddings"], clean_up_tokenization_spaces=False,
        padding_side="left", errors="replace", split_special_tokens=False)
    proc = ImageOnlyProcessor(image_processor=make_image_processor(), tokenizer=tokenizer, video_processor=None,
                              chat_template=CHAT_TEMPLATE)
    assert len(tokenizer) == VOCAB_SIZE, len(tokenizer)
    assert proc.image_token_id == IMAGE_ID
    return proc


# ----------------------------------------------------------------------------------------------
# 2. Pages
# ----------------------------------------------------------------------------------------------
def _page(w: int, h: int, rng) -> Image.Image:
    """A page-like image: white background, a title bar, text lines, a table grid, a coloured figure."""
    im = Image.new("RGB", (w, h), (255, 255, 255))
    d = ImageDraw.Draw(im)
    u = max(1, min(w, h) // 40)
    y = 2 * u
    d.rectangle((2 * u, y, w - 2 * u, y + 3 * u), fill=(30, 30, 120))
    y += 5 * u
    while y < h * 0.55:
        x1 = int(w * rng.uniform(0.5, 0.95))
        d.rectangle((2 * u, y, x1, y + max(1, u)), fill=(40, 40, 40))
        y += 3 * u
    t0 = int(h * 0.6)
    for i in range(5):
        yy = t0 + i * int(h * 0.06)
        d.line((2 * u, yy, w - 2 * u, yy), fill=(0, 0, 0), width=max(1, u // 3))
    d.ellipse((int(w * 0.6), int(h * 0.88), int(w * 0.8), int(h * 0.97)), fill=(200, 60, 30))
    if w * h <= 100_000:
        arr = np.asarray(im).astype(np.int16)
        arr = np.clip(arr + rng.integers(-8, 9, size=arr.shape), 0, 255).astype(np.uint8)
        im = Image.fromarray(arr, "RGB")
    return im


def make_pages() -> dict[str, Image.Image]:
    rng = np.random.default_rng(IMAGE_SEED)
    return {
        "a4_150dpi": _page(1240, 1754, rng),  # far over max_pixels: scaled down
        "landscape": _page(300, 200, rng),  # over max_pixels: scaled down
        "tiny": _page(20, 30, rng),  # under min_pixels: scaled up
        "strip_wide": _page(420, 50, rng),  # 2 × 14 merged patches: several Qwen2.5 windows across
        "strip_tall": _page(50, 420, rng),
        "exact": _page(112, 84, rng),  # multiples of 28 within the limits: no resize
    }


# ----------------------------------------------------------------------------------------------
# 3. Models
# ----------------------------------------------------------------------------------------------
def model_config(family: str):
    common = dict(vision_start_token_id=VISION_START_ID, vision_end_token_id=VISION_END_ID,
                  image_token_id=IMAGE_ID, video_token_id=VIDEO_ID, bos_token_id=IM_START_ID,
                  eos_token_id=IM_END_ID, pad_token_id=PAD_ID, tie_word_embeddings=False, use_cache=True)
    text = dict(TEXT, vocab_size=VOCAB_SIZE, hidden_act="silu", rope_scaling={"type": "mrope", "mrope_section": MROPE_SECTION},
                bos_token_id=IM_START_ID, eos_token_id=IM_END_ID, pad_token_id=PAD_ID, tie_word_embeddings=False,
                use_sliding_window=False, attention_dropout=0.0)
    vision = dict(in_channels=3, patch_size=PATCH, temporal_patch_size=TEMPORAL, spatial_merge_size=MERGE)
    if family == "qwen2vl":
        from transformers import Qwen2VLConfig

        return Qwen2VLConfig(text_config=dict(text, model_type="qwen2_vl_text"),
                             vision_config=dict(vision, **VISION_QWEN2), **common)
    from transformers import Qwen2_5_VLConfig

    return Qwen2_5_VLConfig(text_config=dict(text, model_type="qwen2_5_vl_text"),
                            vision_config=dict(vision, **VISION_QWEN25), **common)


def build_model(family: str, seed: int, std: float):
    from transformers import Qwen2_5_VLForConditionalGeneration, Qwen2VLForConditionalGeneration

    seed_all(seed)
    cfg = model_config(family)
    cfg._attn_implementation = "eager"
    cls = Qwen2VLForConditionalGeneration if family == "qwen2vl" else Qwen2_5_VLForConditionalGeneration
    model = cls(cfg).eval()
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.dim() >= 2:
                fan_in = int(np.prod(p.shape[1:])) if "embed" not in name else 1
                scale = std if "embed_tokens" in name else std * math.sqrt(16.0 / fan_in) * 2
                p.copy_(torch.randn(p.shape, generator=g) * scale)
            elif "norm" in name or "ln_q" in name:
                p.copy_(1.0 + 0.1 * torch.randn(p.shape, generator=g))
            else:
                p.copy_(0.05 * torch.randn(p.shape, generator=g))
        for t in EOS_IDS:
            model.lm_head.weight[t] *= 1.0 + EOS_BIAS
    model.generation_config.update(**generation_config_dict())
    return model


def generation_config_dict():
    return {"bos_token_id": IM_START_ID, "eos_token_id": EOS_IDS, "pad_token_id": PAD_ID,
            "max_new_tokens": MAX_NEW_TOKENS, "do_sample": False, "use_cache": True}


# ----------------------------------------------------------------------------------------------
# 4. ONNX wrappers
# ----------------------------------------------------------------------------------------------
class VisionEncoder(torch.nn.Module):
    """pixel_values [N, 3·2·14·14] f32 + grid [num_images, 3] i64 → image_features [N / merge², hidden].

    The same computation as the model's vision tower, written so that a traced graph stays general in
    the grid (transformers loops over the grid in Python and splits attention by `cu_seqlens`):
    - every patch's (h, w) rotary position is arithmetic on its index within its image (the merge-block
      order of `rot_pos_emb`);
    - attention over all patches with an additive mask that allows a patch to see the patches of its own
      image (frame), and for Qwen2.5-VL's window layers the patches of its own window. Attention is
      permutation-invariant, so Qwen2.5-VL's window reordering (`get_window_index`) and its inverse are
      left out: the merger groups the same merge² patches either way.
    """

    def __init__(self, model, family: str):
        super().__init__()
        self.visual = model.model.visual
        self.qwen25 = family == "qwen2_5vl"
        vc = model.config.vision_config
        self.merge = vc.spatial_merge_size
        self.window = (vc.window_size // vc.spatial_merge_size // vc.patch_size) if self.qwen25 else 0
        self.full = set(vc.fullatt_block_indexes) if self.qwen25 else set(range(vc.depth))

    def forward(self, pixel_values, grid):
        from transformers.models.qwen2_vl.modeling_qwen2_vl import apply_rotary_pos_emb_vision

        v = self.visual
        m = self.merge
        x = v.patch_embed(pixel_values)
        n = x.shape[0]
        t, h, w = grid[:, 0], grid[:, 1], grid[:, 2]
        sizes = t * h * w
        ends = torch.cumsum(sizes, 0)
        i = torch.arange(n, dtype=torch.int64)
        img = (i[:, None] >= ends[None, :]).to(torch.int64).sum(-1)
        li = i - (ends - sizes)[img]
        hh, ww = h[img], w[img]
        frame_len = hh * ww
        fi = li % frame_len
        frame = li // frame_len
        wu = ww // m
        mw = fi % m
        mh = (fi // m) % m
        unit = fi // (m * m)
        bw = unit % wu
        bh = unit // wu
        hpos = bh * m + mh
        wpos = bw * m + mw
        inv = v.rotary_pos_emb.inv_freq
        rot = torch.cat([hpos.to(torch.float32)[:, None] * inv[None, :], wpos.to(torch.float32)[:, None] * inv[None, :]], -1)
        emb = torch.cat([rot, rot], -1)
        cos, sin = emb.cos(), emb.sin()
        seg = img * 100000 + frame
        same = seg[:, None] == seg[None, :]
        neg = torch.finfo(torch.float32).min
        zero = torch.zeros((), dtype=torch.float32)
        full_mask = torch.where(same, zero, torch.full((), neg))
        if self.qwen25:
            win = (bh // self.window) * 100000 + (bw // self.window)
            win_mask = torch.where(same & (win[:, None] == win[None, :]), zero, torch.full((), neg))
        for k, blk in enumerate(v.blocks):
            mask = full_mask if k in self.full else win_mask
            hs = blk.norm1(x)
            attn = blk.attn
            q, kk, vv = attn.qkv(hs).reshape(n, 3, attn.num_heads, -1).permute(1, 0, 2, 3).unbind(0)
            q, kk = apply_rotary_pos_emb_vision(q, kk, cos, sin)
            q, kk, vv = q.transpose(0, 1), kk.transpose(0, 1), vv.transpose(0, 1)
            wts = torch.matmul(q, kk.transpose(1, 2)) * attn.scaling + mask
            wts = torch.softmax(wts, dim=-1, dtype=torch.float32).to(q.dtype)
            o = torch.matmul(wts, vv).transpose(0, 1).reshape(n, -1)
            x = x + attn.proj(o)
            x = x + blk.mlp(blk.norm2(x))
        return v.merger(x)


class EmbedTokens(torch.nn.Module):
    def __init__(self, model):
        super().__init__()
        self.embed = model.model.language_model.embed_tokens

    def forward(self, input_ids):
        return self.embed(input_ids)


class Decoder(idefics3.Decoder):
    """make_idefics3's decoder wrapper (explicit 4-D mask, DynamicCache in and out) on the Qwen2-VL
    text model: position_ids [3, B, S] pass through to its multimodal rotary embedding."""

    def __init__(self, model):
        torch.nn.Module.__init__(self)
        self.text = model.model.language_model
        self.lm_head = model.lm_head
        self.n_layers = model.config.text_config.num_hidden_layers


def ort_sessions(onnx_dir: Path):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.log_severity_level = 3
    return {n: ort.InferenceSession(str(onnx_dir / f"{n}.onnx"), so, providers=["CPUExecutionProvider"])
            for n in ("vision_encoder", "embed_tokens", "decoder_model_merged")}


def export_onnx(model, family: str, proc, pages, out: Path) -> dict:
    """Export the three graphs; return the max |torch − onnxruntime| per graph."""
    onnx_dir = out / "onnx"
    onnx_dir.mkdir(parents=True, exist_ok=True)
    grid_name = FAMILIES[family]["grid_name"]
    tc = model.config.text_config
    n_layers, kvh = tc.num_hidden_layers, tc.num_key_value_heads
    hd = tc.hidden_size // tc.num_attention_heads
    g = torch.Generator().manual_seed(7)
    diffs = {}

    ve = VisionEncoder(model, family).eval()
    ip = proc.image_processor
    trace = ip(images=[pages["strip_wide"], pages["exact"]], return_tensors="pt")
    with torch.no_grad():
        torch.onnx.export(ve, (trace["pixel_values"], trace["image_grid_thw"]), str(onnx_dir / "vision_encoder.onnx"),
                          input_names=["pixel_values", grid_name], output_names=["image_features"],
                          dynamic_axes={"pixel_values": {0: "num_patches"}, grid_name: {0: "num_images"},
                                        "image_features": {0: "num_image_tokens"}},
                          opset_version=17, dynamo=False, do_constant_folding=True)
    et = EmbedTokens(model).eval()
    ids = torch.randint(0, tc.vocab_size, (2, 5), generator=g)
    with torch.no_grad():
        torch.onnx.export(et, (ids,), str(onnx_dir / "embed_tokens.onnx"), input_names=["input_ids"],
                          output_names=["inputs_embeds"],
                          dynamic_axes={"input_ids": {0: "batch_size", 1: "sequence_length"},
                                        "inputs_embeds": {0: "batch_size", 1: "sequence_length"}},
                          opset_version=17, dynamo=False)
    dec = Decoder(model).eval()
    B, s, past = 2, 3, 4
    emb = torch.randn(B, s, tc.hidden_size, generator=g)
    am = torch.ones(B, past + s, dtype=torch.int64)
    pos = torch.arange(past, past + s)[None, None, :].repeat(3, B, 1)
    pkv = [torch.randn(B, kvh, past, hd, generator=g) for _ in range(2 * n_layers)]
    in_names = ["inputs_embeds", "attention_mask", "position_ids"]
    out_names = ["logits"]
    dyn = {"inputs_embeds": {0: "batch_size", 1: "sequence_length"},
           "attention_mask": {0: "batch_size", 1: "total_sequence_length"},
           "position_ids": {1: "batch_size", 2: "sequence_length"},
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

    sess = ort_sessions(onnx_dir)
    with torch.no_grad():
        # vision: other pages than traced (one image, then three of different grids) against get_image_features
        d = 0.0
        for names in (["tiny"], ["strip_tall", "landscape", "exact"], ["strip_wide"]):
            enc = ip(images=[pages[n] for n in names], return_tensors="pt")
            ref = torch.cat(model.model.get_image_features(enc["pixel_values"], enc["image_grid_thw"]), 0)
            got = sess["vision_encoder"].run(None, {"pixel_values": enc["pixel_values"].numpy(),
                                                    grid_name: enc["image_grid_thw"].numpy()})[0]
            assert got.shape == tuple(ref.shape), (got.shape, ref.shape)
            d = max(d, float(np.abs(got - ref.numpy()).max()))
        diffs["vision_encoder"] = d
        ids = torch.randint(0, tc.vocab_size, (3, 7), generator=g)
        got = sess["embed_tokens"].run(None, {"input_ids": ids.numpy()})[0]
        diffs["embed_tokens"] = float(np.abs(got - et(ids).numpy()).max())
        # decoder: prefill with left padding and 3-D positions, then one cache step, against the text model
        B, s = 3, 6
        emb = torch.randn(B, s, tc.hidden_size, generator=g)
        am = torch.ones(B, s, dtype=torch.int64)
        am[1, :2] = 0
        pos1 = (am.cumsum(-1) - 1).masked_fill(am == 0, 1)
        pos = torch.stack([pos1, pos1 // 2, pos1 % 3 + 1])  # distinct t/h/w rows exercise mrope_section
        feeds = {"inputs_embeds": emb.numpy(), "attention_mask": am.numpy(), "position_ids": pos.numpy()}
        for i in range(n_layers):
            for kv in ("key", "value"):
                feeds[f"past_key_values.{i}.{kv}"] = np.zeros((B, kvh, 0, hd), np.float32)
        outs = sess["decoder_model_merged"].run(None, feeds)
        lm = model.model.language_model
        ref = lm(inputs_embeds=emb, attention_mask=am, position_ids=pos, use_cache=True)
        rl = model.lm_head(ref.last_hidden_state)
        valid = am.bool().numpy()
        dd = float(np.abs(outs[0] - rl.numpy())[valid].max())
        emb2 = torch.randn(B, 1, tc.hidden_size, generator=g)
        am2 = torch.cat([am, torch.ones(B, 1, dtype=torch.int64)], 1)
        pos2 = (pos.amax(-1, keepdim=True) + 1)
        feeds = {"inputs_embeds": emb2.numpy(), "attention_mask": am2.numpy(), "position_ids": pos2.numpy()}
        for i in range(n_layers):
            feeds[f"past_key_values.{i}.key"] = outs[1 + 2 * i]
            feeds[f"past_key_values.{i}.value"] = outs[2 + 2 * i]
        outs2 = sess["decoder_model_merged"].run(None, feeds)
        ref2 = lm(inputs_embeds=emb2, attention_mask=am2, position_ids=pos2, past_key_values=ref.past_key_values,
                  use_cache=True)
        dd = max(dd, float(np.abs(outs2[0] - model.lm_head(ref2.last_hidden_state).numpy()).max()))
        diffs["decoder_model_merged"] = dd
    for k, v in diffs.items():
        log(f"  onnx vs torch {k}: max |diff| = {v:.2e}")
    return diffs


def onnx_signatures(onnx_dir: Path) -> dict:
    res = {}
    for name, s in ort_sessions(onnx_dir).items():
        res[f"{name}.onnx"] = {
            "inputs": [{"name": i.name, "type": i.type, "shape": i.shape} for i in s.get_inputs()],
            "outputs": [{"name": o.name, "type": o.type, "shape": o.shape} for o in s.get_outputs()],
        }
    return res


# ----------------------------------------------------------------------------------------------
# 5. References
# ----------------------------------------------------------------------------------------------
def prepare(proc, pages: list[Image.Image], prompt=TASK_PROMPT):
    text = proc.apply_chat_template(messages(prompt), add_generation_prompt=True)
    enc = proc(text=[text] * len(pages), images=pages, return_tensors="pt", padding=True)
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


def rope_index(input_ids, grids, mask):
    """get_rope_index for images, in plain Python (what the Rust side does), checked against the model's."""
    B, S = input_ids.shape
    pos = np.ones((3, B, S), np.int64)
    deltas = []
    gi = 0
    for b in range(B):
        ids = [int(x) for x, mm in zip(input_ids[b], mask[b]) if mm == 1]
        out = [[], [], []]
        st = 0
        nxt = 0
        while True:
            try:
                ed = ids.index(IMAGE_ID, st)
            except ValueError:
                break
            t, h, w = (int(v) for v in grids[gi])
            gi += 1
            lh, lw = h // MERGE, w // MERGE
            for k in range(ed - st):
                for r in range(3):
                    out[r].append(nxt + k)
            off = nxt + ed - st
            for ti in range(t):
                for hi in range(lh):
                    for wi in range(lw):
                        out[0].append(off + ti)
                        out[1].append(off + hi)
                        out[2].append(off + wi)
            nxt = max(max(o) for o in out) + 1
            st = ed + t * lh * lw
        for k in range(len(ids) - st):
            for r in range(3):
                out[r].append(nxt + k)
        cols = [j for j in range(S) if mask[b][j] == 1]
        for r in range(3):
            for j, v in zip(cols, out[r]):
                pos[r, b, j] = v
        deltas.append(max(max(o) for o in out) + 1 - S)
    return pos, np.array(deltas, np.int64)


class OrtGreedy:
    """A plain numpy + onnxruntime greedy loop over the three graphs: what the Rust side does."""

    def __init__(self, onnx_dir: Path, grid_name: str):
        self.s = ort_sessions(onnx_dir)
        self.grid_name = grid_name
        dec = self.s["decoder_model_merged"]
        self.past_names = [i.name for i in dec.get_inputs() if i.name.startswith("past_key_values.")]
        pk = next(i for i in dec.get_inputs() if i.name.startswith("past_key_values."))
        self.kv_heads, self.head_dim = pk.shape[1], pk.shape[3]

    def generate(self, input_ids, attention_mask, pixel_values, grids):
        input_ids = np.asarray(input_ids, np.int64)
        mask = np.asarray(attention_mask, np.int64)
        B, S = input_ids.shape
        feats = self.s["vision_encoder"].run(None, {"pixel_values": np.asarray(pixel_values, np.float32),
                                                    self.grid_name: np.asarray(grids, np.int64)})[0]
        emb = self.s["embed_tokens"].run(None, {"input_ids": input_ids})[0]
        img = input_ids == IMAGE_ID
        assert img.sum() == feats.shape[0]
        emb[img] = feats
        pos, deltas = rope_index(input_ids, grids, mask)
        past = {n: np.zeros((B, self.kv_heads, 0, self.head_dim), np.float32) for n in self.past_names}
        done = np.zeros(B, bool)
        out = [[] for _ in range(B)]
        for _ in range(MAX_NEW_TOKENS):
            res = self.s["decoder_model_merged"].run(None, {"inputs_embeds": emb, "attention_mask": mask,
                                                            "position_ids": pos, **past})
            nxt = res[0][:, -1, :].argmax(-1)
            nxt = np.where(done, PAD_ID, nxt)
            for b in range(B):
                out[b].append(int(nxt[b]))
            done |= np.isin(nxt, EOS_IDS)
            if done.all():
                break
            past = {n: res[1 + k] for k, n in enumerate(self.past_names)}
            emb = self.s["embed_tokens"].run(None, {"input_ids": nxt[:, None].astype(np.int64)})[0]
            cache_len = mask.shape[1]
            mask = np.concatenate([mask, np.ones((B, 1), np.int64)], 1)
            pos = np.broadcast_to((cache_len + deltas)[None, :, None], (3, B, 1)).copy()
        return out


FULL_PIXELS = ("tiny", "strip_wide")  # pages whose whole pixel tensor is committed (the rest: sha256)


def preprocess_references(proc, pages, out: Path) -> dict:
    from transformers.models.qwen2_vl.image_processing_qwen2_vl import smart_resize

    refs = {}
    ip = proc.image_processor
    for name, im in pages.items():
        enc = ip(images=[im], return_tensors="np")
        pv = enc["pixel_values"].astype(np.float32)
        grid = enc["image_grid_thw"][0].tolist()
        w, h = im.size
        rh, rw = smart_resize(h, w, factor=FACTOR, min_pixels=MIN_PIXELS, max_pixels=MAX_PIXELS)
        resized = np.asarray(im.resize((rw, rh), resample=Image.BICUBIC))
        fn_resized = f"preprocess/{name}_resized.npy"
        save_npy(out / fn_resized, resized)
        ref = {"image": f"images/{name}.png", "input_wh": [w, h], "resized_hw": [rh, rw],
               "resized": fn_resized, "grid_thw": grid, "pixel_values_shape": list(pv.shape),
               "pixel_values_sha256": hashlib.sha256(np.ascontiguousarray(pv).astype("<f4").tobytes()).hexdigest(),
               "image_tokens": int(np.prod(grid)) // MERGE**2}
        if name in FULL_PIXELS:
            fn = f"preprocess/{name}_pixel_values.npy"
            save_npy(out / fn, pv)
            ref["pixel_values"] = fn
        text, enc2 = prepare(proc, [im])
        ref["prompt"] = text
        ref["input_ids"] = enc2["input_ids"][0].tolist()
        refs[name] = ref
    # max_pixels per deployment: the same page with a lower cap
    small = make_image_processor(max_pixels=8 * FACTOR * FACTOR)
    enc = small(images=[pages["a4_150dpi"]], return_tensors="np")
    refs["a4_150dpi/max_pixels_6272"] = {
        "max_pixels": 8 * FACTOR * FACTOR, "grid_thw": enc["image_grid_thw"][0].tolist(),
        "pixel_values_sha256": hashlib.sha256(enc["pixel_values"].astype("<f4").tobytes()).hexdigest()}
    return refs


GEN_CASES = [  # (name, pages)
    ("single/a4_150dpi", ["a4_150dpi"]),
    ("single/landscape", ["landscape"]),
    ("single/strip_wide", ["strip_wide"]),
    ("single/strip_tall", ["strip_tall"]),
    ("single/tiny", ["tiny"]),
    ("batch/a4_150dpi+strip_wide+tiny", ["a4_150dpi", "strip_wide", "tiny"]),
    ("batch/landscape+strip_tall", ["landscape", "strip_tall"]),
]


def generation_references(model, proc, pages, onnx_dir: Path, grid_name: str):
    refs = {}
    single_ids = {}
    ortg = OrtGreedy(onnx_dir, grid_name)
    for name, pnames in GEN_CASES:
        text, enc = prepare(proc, [pages[n] for n in pnames])
        pos_ref, deltas_ref = model.model.get_rope_index(enc["input_ids"], image_grid_thw=enc["image_grid_thw"],
                                                         attention_mask=enc["attention_mask"])
        pos, deltas = rope_index(enc["input_ids"].numpy(), enc["image_grid_thw"].numpy(),
                                 enc["attention_mask"].numpy())
        assert (pos == pos_ref.numpy()).all() and (deltas == deltas_ref.numpy()[:, 0]).all(), name
        seqs, margins = greedy_generate(model, enc)
        rows = []
        for i, (seq, m) in enumerate(zip(seqs, margins)):
            gen, reason = cut_at_eos(seq)
            rows.append({"page": pnames[i], "generated_ids": gen, "finish_reason": reason, "min_top2_margin": m,
                         "text": proc.tokenizer.decode(gen, skip_special_tokens=True)})
        case = {"pages": pnames, "prompt": text, "input_ids": enc["input_ids"].tolist(),
                "attention_mask": enc["attention_mask"].tolist(), "image_grid_thw": enc["image_grid_thw"].tolist(),
                "position_ids": pos.tolist(), "rope_deltas": deltas.tolist(), "sequences": seqs, "rows": rows}
        if len(pnames) == 1:
            single_ids[pnames[0]] = rows[0]["generated_ids"]
        else:
            case["matches_single"] = [single_ids.get(p) == r["generated_ids"] for p, r in zip(pnames, rows)]
        g = ortg.generate(enc["input_ids"].numpy(), enc["attention_mask"].numpy(), enc["pixel_values"].numpy(),
                          enc["image_grid_thw"].numpy())
        L = max(len(r) for r in seqs)
        g = [r[:L] for r in g]
        case["onnx_greedy_matches"] = g == seqs
        assert g == seqs, (name, g, seqs)
        refs[name] = case
    return refs


def check_candidate(model, proc, pages) -> tuple[bool, str]:
    outs, reasons, margins = [], [], []
    for name, pnames in GEN_CASES:
        if len(pnames) != 1:
            continue
        _, enc = prepare(proc, [pages[pnames[0]]])
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


def write_model_dir(model, proc, out: Path):
    from transformers import GenerationConfig

    model.config.save_pretrained(out)
    GenerationConfig(**generation_config_dict()).save_pretrained(out)
    proc.image_processor.save_pretrained(out)
    proc.tokenizer.save_pretrained(out)
    (out / "chat_template.jinja").write_text(CHAT_TEMPLATE)
    # `vocab.json` / `merges.txt` (the slow tokenizer's files) are not needed: tokenizer.json holds both.
    for extra in ("vocab.json", "merges.txt", "added_tokens.json"):
        (out / extra).unlink(missing_ok=True)


def build_family(family: str, proc, pages, search: bool):
    spec = FAMILIES[family]
    out = FIXTURES / spec["dir"]
    if search:
        chosen = None
        for seed in SEEDS:
            for std in INIT_STDS:
                ok, why = check_candidate(build_model(family, seed, std), proc, pages)
                log(f"{family} seed {seed} std {std}: {why}")
                if ok:
                    chosen = (seed, std)
                    break
            if chosen:
                break
        assert chosen, "no candidate passed"
    else:
        chosen = spec["chosen"]
    seed, std = chosen
    log(f"{family}: model seed {seed}, init std {std}")
    model = build_model(family, seed, std)
    ok, why = check_candidate(model, proc, pages)
    log(f"  candidate check: {why}")

    if out.exists():
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
    diffs = export_onnx(model, family, proc, pages, out)
    for k, v in diffs.items():
        assert v < 1e-4, (k, v)

    import onnx
    import onnxruntime
    import PIL
    import tokenizers as tk
    import transformers

    ref = {
        "generator": "scripts/vlm/make_qwen2vl.py",
        "family": spec["model_type"],
        "versions": {"python": sys.version.split()[0], "torch": torch.__version__,
                     "transformers": transformers.__version__, "tokenizers": tk.__version__,
                     "onnx": onnx.__version__, "onnxruntime": onnxruntime.__version__, "pillow": PIL.__version__,
                     "numpy": np.__version__},
        "model": {"seed": seed, "init_std": std, "eos_bias": EOS_BIAS, "candidate_check": why,
                  "parameters": sum(p.numel() for p in model.parameters()), "patch": PATCH,
                  "temporal_patch_size": TEMPORAL, "merge_size": MERGE, "min_pixels": MIN_PIXELS,
                  "max_pixels": MAX_PIXELS, "text": TEXT, "mrope_section": MROPE_SECTION,
                  "vision": VISION_QWEN2 if family == "qwen2vl" else VISION_QWEN25, "vocab_size": VOCAB_SIZE},
        "tokens": {"endoftext": ENDOFTEXT_ID, "im_start": IM_START_ID, "im_end": IM_END_ID,
                   "vision_start": VISION_START_ID, "vision_end": VISION_END_ID, "image_pad": IMAGE_ID,
                   "video_pad": VIDEO_ID, "pad": PAD_ID, "eos": EOS_IDS},
        "grid_input": spec["grid_name"],
        "max_new_tokens": MAX_NEW_TOKENS,
        "task_prompt": TASK_PROMPT,
        "onnx_vs_torch_max_abs_diff": diffs,
        "onnx_signatures": onnx_signatures(out / "onnx"),
        "images": images,
    }
    if family == "qwen2vl":  # the same Qwen2VLImageProcessor for both families: recorded once
        ref["preprocess"] = preprocess_references(proc, pages, out)
    ref["generate"] = generation_references(model, proc, pages, out / "onnx", spec["grid_name"])
    files = {}
    for p in sorted(out.rglob("*")):
        if p.is_file() and p.name not in ("reference.json", "README.md"):
            files[str(p.relative_to(out))] = {"bytes": p.stat().st_size, "sha256": sha256_file(p)}
    ref["files"] = files
    (out / "reference.json").write_text(json.dumps(ref, indent=1, ensure_ascii=False) + "\n")
    total = sum(f["bytes"] for f in files.values())
    log(f"wrote {out} ({total / 1e6:.2f} MB + reference.json)")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--search", action="store_true")
    ap.add_argument("--family", choices=sorted(FAMILIES), action="append")
    args = ap.parse_args()
    torch.set_num_threads(2)
    proc = make_processor()
    pages = make_pages()
    for family in args.family or ["qwen2vl", "qwen2_5vl"]:
        build_family(family, proc, pages, args.search)


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Generate the tiny vision-encoder-decoder (Donut-style) test fixtures for docfleet.

Everything is created locally and deterministically (no Hugging Face hub access):

  1. a byte-level BPE tokenizer trained on an embedded, programmatically generated corpus;
  2. a tiny randomly initialised ``VisionEncoderDecoderModel`` (DonutSwin encoder + MBart decoder),
     with a seeded search over (seed, eos_scale) so that the greedy outputs are "interesting"
     (distinct per image, some stop on EOS, some on the length limit, the repetition guard matters,
     and no argmax is a near-tie);
  3. a ``DonutImageProcessor`` (preprocessor_config.json);
  4. ONNX exports with optimum in both layouts (merged decoder / split decoder + decoder-with-past);
  5. a handful of deterministic PNG test images and their preprocessed ``pixel_values``;
  6. reference greedy generations from ``transformers`` (single image and batched, with and without
     the ``<s_ocr>`` task prompt, three repetition-guard variants) and a cross-check with a plain
     numpy + onnxruntime greedy KV-cache loop over both ONNX layouts.

Usage (see tests/fixtures/vlm/README.md):

    python -m venv ~/.cache/docfleet/vlm-venv
    ~/.cache/docfleet/vlm-venv/bin/pip install -r scripts/vlm/requirements.txt
    ~/.cache/docfleet/vlm-venv/bin/python scripts/vlm/generate_tiny_vlm.py

The script writes only under tests/fixtures/vlm/ (plus a scratch directory, by default
~/.cache/docfleet/vlm-work, for the PyTorch checkpoint and the raw optimum export).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import shutil
import sys
from pathlib import Path

# optimum's decoder merge picks initializer names through set iteration, i.e. str hashing: pin the hash
# seed (it only takes effect at interpreter start, hence the re-exec) so the ONNX bytes are reproducible.
if os.environ.get("PYTHONHASHSEED") != "0":
    os.environ["PYTHONHASHSEED"] = "0"
    os.execv(sys.executable, [sys.executable, *sys.argv])

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np  # noqa: E402
import torch  # noqa: E402
from PIL import Image, ImageDraw, ImageFont  # noqa: E402
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
FIXTURES = REPO / "tests" / "fixtures" / "vlm"

# ----------------------------------------------------------------------------------------------
# Fixed choices (change them and the fixtures change).
# ----------------------------------------------------------------------------------------------
CORPUS_SEED = 1234
IMAGE_SEED = 4321
VOCAB_SIZE = 640
SPECIAL_TOKENS = ["<s>", "<pad>", "</s>", "<unk>", "<s_ocr>", "<s_caption>"]  # ids 0..5
BOS_ID, PAD_ID, EOS_ID, UNK_ID, OCR_ID, CAPTION_ID = range(6)
DECODER_START_ID = BOS_ID

IMG_H, IMG_W = 64, 48  # DonutImageProcessor size {"height": 64, "width": 48}, portrait like Donut
ENC_EMBED_DIM = 32  # Swin stage 1 dim; stage 2 (after patch merging) = 64 = encoder hidden size
D_MODEL = 64
DEC_LAYERS = 2
DEC_HEADS = 4
DEC_FFN = 128
MAX_POS = 64

MAX_NEW_TOKENS = 20
NO_REPEAT_NGRAM = 3
REP_PENALTY = 1.5  # exactly representable in float32
OCR_PROMPT = [DECODER_START_ID, OCR_ID]
PLAIN_PROMPT = [DECODER_START_ID]

# The (seed, eos_scale) pair used for the committed fixtures. `--search` re-derives it: candidates are
# tried in order (seeds outer, EOS scales inner) and the first that passes check_candidate() wins.
CHOSEN = (45, 2.0)
SEEDS = list(range(0, 200))
EOS_SCALES = [1.5, 2.0, 2.25, 2.5, 2.75, 3.0, 3.5]
ENC_INIT = 0.25
DEC_INIT = 0.25
# Minimum top1-top2 gap of the processed scores at every greedy step of every recorded case. torch vs
# onnxruntime logits differ by ~3e-4 here, so a 1e-2 gap keeps the argmax path stable across runtimes.
MIN_MARGIN = 1e-2

# Guard variants recorded in reference.json. "default" == generation_config.json on disk.
VARIANTS = {
    "default": {"no_repeat_ngram_size": NO_REPEAT_NGRAM, "repetition_penalty": 1.0},
    "repetition_penalty": {"no_repeat_ngram_size": 0, "repetition_penalty": REP_PENALTY},
    "no_guard": {"no_repeat_ngram_size": 0, "repetition_penalty": 1.0},
}
PROMPTS = {"none": PLAIN_PROMPT, "ocr": OCR_PROMPT}


def log(*a):
    print(*a, file=sys.stderr, flush=True)


def sha256_file(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


# ----------------------------------------------------------------------------------------------
# 1. Corpus + tokenizer
# ----------------------------------------------------------------------------------------------
WORDS = {
    "adj": "small large red blue green quiet bright old new dark plain heavy light warm cold fast slow "
    "final total printed scanned signed blank empty full open closed".split(),
    "noun": "invoice receipt document page table figure order payment customer account report letter "
    "form contract number date amount price item box line cell header footer image photo cat dog house "
    "tree river road window door street city store office bank card coffee tea bread milk".split(),
    "verb": "shows contains lists describes prints signs holds marks covers reads scans opens "
    "closes sends pays keeps needs".split(),
    "name": "Alice Bob Carol Dave Erin Frank Grace Heidi Ivan Judy Mallory Oscar Peggy Trent Victor Wendy".split(),
    "place": "Berlin Paris London Madrid Oslo Vienna Prague Dublin Lisbon Rome Warsaw Zurich".split(),
    "month": "January February March April May June July August September October November December".split(),
}


def build_corpus() -> list[str]:
    rng = random.Random(CORPUS_SEED)
    w = {k: v for k, v in WORDS.items()}
    lines: list[str] = []
    templates = [
        lambda: f"The {rng.choice(w['adj'])} {rng.choice(w['noun'])} {rng.choice(w['verb'])} the "
        f"{rng.choice(w['adj'])} {rng.choice(w['noun'])}.",
        lambda: f"Invoice No. {rng.randint(1000, 99999)} dated {rng.randint(1, 28)} "
        f"{rng.choice(w['month'])} {rng.randint(1990, 2030)}",
        lambda: f"Total: ${rng.randint(1, 999)}.{rng.randint(0, 99):02d}",
        lambda: f"{rng.choice(w['name'])} {rng.choice(w['verb'])} a {rng.choice(w['noun'])} in "
        f"{rng.choice(w['place'])}.",
        lambda: f"{rng.randint(1, 20)} x {rng.choice(w['noun'])} @ {rng.randint(1, 99)}.{rng.randint(0, 99):02d}",
        lambda: f"A photo of a {rng.choice(w['adj'])} {rng.choice(w['noun'])} near the "
        f"{rng.choice(w['noun'])}.",
        lambda: f"Page {rng.randint(1, 9)} of {rng.randint(10, 99)} - {rng.choice(w['noun']).title()} "
        f"{rng.choice(w['noun'])}",
        lambda: f"Dear {rng.choice(w['name'])}, please find the {rng.choice(w['noun'])} attached.",
        lambda: f"Tel: +{rng.randint(10, 99)} {rng.randint(100, 999)} {rng.randint(1000, 9999)}; "
        f"Fax: {rng.randint(100000, 999999)}",
        lambda: f"{rng.choice(w['month'])} {rng.randint(1, 28)}, {rng.randint(1990, 2030)}: "
        f"{rng.choice(w['name'])} and {rng.choice(w['name'])} {rng.choice(w['verb'])} the "
        f"{rng.choice(w['noun'])}s.",
    ]
    for _ in range(480):
        lines.append(rng.choice(templates)())
    return lines


def train_tokenizer(corpus: list[str]) -> Tokenizer:
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB_SIZE,
        min_frequency=2,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(corpus, trainer=trainer)
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>",
        pair="<s> $A </s> </s> $B </s>",
        special_tokens=[("<s>", BOS_ID), ("</s>", EOS_ID)],
    )
    for i, t in enumerate(SPECIAL_TOKENS):
        assert tok.token_to_id(t) == i, (t, tok.token_to_id(t))
    assert tok.get_vocab_size() == VOCAB_SIZE, tok.get_vocab_size()
    return tok


def make_hf_tokenizer(tok: Tokenizer):
    from transformers import PreTrainedTokenizerFast

    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<s>",
        eos_token="</s>",
        unk_token="<unk>",
        pad_token="<pad>",
        additional_special_tokens=["<s_ocr>", "<s_caption>"],
        model_max_length=MAX_POS,
        clean_up_tokenization_spaces=False,
    )


# ----------------------------------------------------------------------------------------------
# 2. Images + image processor
# ----------------------------------------------------------------------------------------------
def _font():
    # The classic PIL bitmap font: independent of FreeType / system fonts.
    if hasattr(ImageFont, "load_default_imagefont"):
        return ImageFont.load_default_imagefont()
    return ImageFont.load_default()


def make_images() -> dict[str, Image.Image]:
    rng = np.random.default_rng(IMAGE_SEED)
    font = _font()
    imgs: dict[str, Image.Image] = {}

    # receipt: portrait 120x200 (w x h), black text on off-white, a few rules.
    im = Image.new("RGB", (120, 200), (250, 248, 240))
    d = ImageDraw.Draw(im)
    texts = ["STORE 42", "milk   2.50", "bread  1.75", "tea    4.20", "------------", "TOTAL  8.45", "thank you"]
    for i, t in enumerate(texts):
        d.text((8, 8 + i * 24), t, fill=(20, 20, 20), font=font)
    d.line((4, 180, 116, 180), fill=(0, 0, 0), width=2)
    imgs["receipt"] = im

    # banner: wide landscape 160x48 with coloured shapes and text.
    im = Image.new("RGB", (160, 48), (30, 60, 140))
    d = ImageDraw.Draw(im)
    d.ellipse((4, 4, 44, 44), fill=(240, 200, 40))
    d.rectangle((120, 8, 152, 40), fill=(200, 40, 40), outline=(255, 255, 255))
    d.text((50, 18), "HELLO 2024", fill=(255, 255, 255), font=font)
    imgs["banner"] = im

    # noise: 50x50 uniform RGB noise.
    arr = rng.integers(0, 256, size=(50, 50, 3), dtype=np.uint8)
    imgs["noise"] = Image.fromarray(arr, "RGB")

    # small: tiny 30x44 portrait (needs upscaling) with a gradient and a dark diagonal.
    y = np.linspace(0, 255, 44, dtype=np.float64)[:, None]
    x = np.linspace(0, 255, 30, dtype=np.float64)[None, :]
    g = ((y * 0.7 + x * 0.3)).astype(np.uint8)
    arr = np.stack([g, 255 - g, np.full_like(g, 128)], axis=-1)
    for i in range(30):
        arr[int(i * 44 / 30), i] = (0, 0, 0)
    imgs["small"] = Image.fromarray(arr, "RGB")
    return imgs


def make_image_processor():
    from transformers import DonutImageProcessor

    return DonutImageProcessor(
        do_resize=True,
        size={"height": IMG_H, "width": IMG_W},
        resample=2,  # PIL BILINEAR for the shortest-edge resize (thumbnail always uses BICUBIC)
        do_thumbnail=True,
        do_align_long_axis=False,
        do_pad=True,
        do_rescale=True,
        rescale_factor=1 / 255,
        do_normalize=True,
        image_mean=[0.5, 0.5, 0.5],
        image_std=[0.5, 0.5, 0.5],
    )


def preprocessing_trace(im: Image.Image) -> dict:
    """Geometry of each DonutImageProcessor step (for a Rust re-implementation)."""
    w0, h0 = im.size
    # resize: shortest edge -> min(H, W), keep aspect, long = int(short_new * long / short)
    s = min(IMG_H, IMG_W)
    if w0 <= h0:
        w1, h1 = s, int(s * h0 / w0)
    else:
        h1, w1 = s, int(s * w0 / h0)
    # thumbnail: fit into (IMG_H, IMG_W)
    h2, w2 = min(h1, IMG_H), min(w1, IMG_W)
    thumb = not (h2 == h1 and w2 == w1)
    if thumb:
        if h1 > w1:
            w2 = int(w1 * h2 / h1)
        elif w1 > h1:
            h2 = int(h1 * w2 / w1)
    else:
        h2, w2 = h1, w1
    pad_top = (IMG_H - h2) // 2
    pad_left = (IMG_W - w2) // 2
    return {
        "input_wh": [w0, h0],
        "after_resize_wh": [w1, h1],
        "thumbnail_applied": thumb,
        "after_thumbnail_wh": [w2, h2],
        "pad_left": pad_left,
        "pad_right": IMG_W - w2 - pad_left,
        "pad_top": pad_top,
        "pad_bottom": IMG_H - h2 - pad_top,
    }


# ----------------------------------------------------------------------------------------------
# 3. Model
# ----------------------------------------------------------------------------------------------
def build_model(seed: int, eos_scale: float):
    from transformers import (
        DonutSwinConfig,
        MBartConfig,
        VisionEncoderDecoderConfig,
        VisionEncoderDecoderModel,
    )

    enc = DonutSwinConfig(
        image_size=[IMG_H, IMG_W],
        patch_size=4,
        num_channels=3,
        embed_dim=ENC_EMBED_DIM,
        depths=[2, 2],
        num_heads=[2, 4],
        window_size=4,
        mlp_ratio=2.0,
        drop_path_rate=0.0,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
        initializer_range=ENC_INIT,
    )
    dec = MBartConfig(
        vocab_size=VOCAB_SIZE,
        d_model=D_MODEL,
        decoder_layers=DEC_LAYERS,
        decoder_attention_heads=DEC_HEADS,
        decoder_ffn_dim=DEC_FFN,
        encoder_layers=DEC_LAYERS,
        encoder_attention_heads=DEC_HEADS,
        encoder_ffn_dim=DEC_FFN,
        max_position_embeddings=MAX_POS,
        scale_embedding=True,
        add_final_layer_norm=True,
        dropout=0.0,
        attention_dropout=0.0,
        activation_dropout=0.0,
        init_std=DEC_INIT,
        pad_token_id=PAD_ID,
        bos_token_id=BOS_ID,
        eos_token_id=EOS_ID,
        decoder_start_token_id=DECODER_START_ID,
        forced_eos_token_id=None,
        is_decoder=True,
        add_cross_attention=True,
        tie_word_embeddings=True,
    )
    cfg = VisionEncoderDecoderConfig.from_encoder_decoder_configs(enc, dec)
    cfg.decoder_start_token_id = DECODER_START_ID
    cfg.pad_token_id = PAD_ID
    cfg.eos_token_id = EOS_ID
    cfg.bos_token_id = BOS_ID
    cfg.tie_word_embeddings = False  # the VED wrapper does not tie encoder and decoder
    torch.manual_seed(seed)
    model = VisionEncoderDecoderModel(config=cfg)
    model.eval()
    with torch.no_grad():
        emb = model.decoder.get_input_embeddings().weight
        emb[EOS_ID] *= eos_scale  # tied with lm_head: makes EOS more/less likely
    assert model.decoder.lm_head.weight.data_ptr() == emb.data_ptr(), "lm_head should be tied"
    # Neutral in-memory generation config. NB: transformers 4.5x merges the *model's* generation_config
    # into an explicitly passed one wherever the passed value equals the library default (e.g.
    # no_repeat_ngram_size=0), so a model carrying no_repeat_ngram_size=3 would silently apply it to the
    # "no_guard"/"repetition_penalty" variants. Keep the model's own config guard-free.
    model.generation_config = make_generation_config("no_guard")
    return model


def make_generation_config(variant: str):
    from transformers import GenerationConfig

    v = VARIANTS[variant]
    kw = dict(
        decoder_start_token_id=DECODER_START_ID,
        bos_token_id=BOS_ID,
        eos_token_id=EOS_ID,
        pad_token_id=PAD_ID,
        forced_eos_token_id=None,
        max_new_tokens=MAX_NEW_TOKENS,
        num_beams=1,
        do_sample=False,
        use_cache=True,
    )
    if v["no_repeat_ngram_size"]:
        kw["no_repeat_ngram_size"] = v["no_repeat_ngram_size"]
    if v["repetition_penalty"] != 1.0:
        kw["repetition_penalty"] = v["repetition_penalty"]
    return GenerationConfig(**kw)


def _finish(gen: list[int]) -> tuple[list[int], str]:
    """Strip padding after EOS; return (generated ids incl. EOS, finish reason)."""
    if EOS_ID in gen:
        k = gen.index(EOS_ID)
        return gen[: k + 1], "eos"
    assert len(gen) == MAX_NEW_TOKENS, gen
    return gen, "length"


@torch.no_grad()
def hf_generate(model, pixel_values: torch.Tensor, prompt: list[int], variant: str) -> dict:
    gc = make_generation_config(variant)
    mgc = model.generation_config
    assert not mgc.no_repeat_ngram_size and mgc.repetition_penalty in (None, 1.0), "see build_model()"
    b = pixel_values.shape[0]
    dec = torch.tensor([prompt] * b, dtype=torch.long)
    out = model.generate(
        pixel_values=pixel_values,
        decoder_input_ids=dec,
        generation_config=gc,
        return_dict_in_generate=True,
        output_scores=True,
    )
    seqs = out.sequences.tolist()
    rows = []
    for r in range(b):
        gen_raw = seqs[r][len(prompt):]
        gen, reason = _finish(gen_raw)
        margins = []
        for t in range(len(gen)):
            s = out.scores[t][r].float()
            top = torch.topk(s, 2).values
            margins.append(float(top[0] - top[1]))
        rows.append({"sequence": seqs[r], "generated": gen, "finish_reason": reason, "min_margin": min(margins)})
    return {"sequences": seqs, "rows": rows}


def check_candidate(model, pv_all: torch.Tensor) -> tuple[bool, str, dict]:
    res = {}
    for variant in VARIANTS:
        for pname, prompt in PROMPTS.items():
            res[(variant, pname)] = [hf_generate(model, pv_all[i : i + 1], prompt, variant)["rows"][0] for i in range(len(pv_all))]
    for (variant, pname), rows in res.items():
        m = min(r["min_margin"] for r in rows)
        if m < MIN_MARGIN:
            return False, f"{variant}/{pname}: margin {m:.2e}", res
        if any(PAD_ID in r["generated"] for r in rows):
            return False, f"{variant}/{pname}: generated <pad>", res
        if variant == "no_guard":
            continue
        gens = [tuple(r["generated"]) for r in rows]
        if len(set(gens)) != len(gens):
            return False, f"{variant}/{pname}: duplicate outputs", res
        reasons = [r["finish_reason"] for r in rows]
        if "eos" not in reasons or "length" not in reasons:
            return False, f"{variant}/{pname}: reasons {reasons}", res
        if any(r["finish_reason"] == "eos" and len(r["generated"]) < 3 for r in rows):
            return False, f"{variant}/{pname}: EOS too early", res
    for pname in PROMPTS:
        base = [r["generated"] for r in res[("no_guard", pname)]]
        for variant in ("default", "repetition_penalty"):
            if [r["generated"] for r in res[(variant, pname)]] == base:
                return False, f"{variant}/{pname}: guard has no effect", res
        # the guard should matter for at least one length-limited sequence as well
    if [r["generated"] for r in res[("default", "none")]] == [r["generated"] for r in res[("default", "ocr")]]:
        return False, "prompt has no effect", res
    return True, "ok", res


# ----------------------------------------------------------------------------------------------
# 4. ONNX export
# ----------------------------------------------------------------------------------------------
def export_onnx(hf_dir: Path, out_dir: Path, no_post_process: bool):
    from optimum.exporters.onnx import main_export

    if out_dir.exists():
        shutil.rmtree(out_dir)
    main_export(
        model_name_or_path=str(hf_dir),
        output=str(out_dir),
        task="image-to-text-with-past",
        library_name="transformers",
        device="cpu",
        no_post_process=no_post_process,
        do_validation=True,
    )


# ----------------------------------------------------------------------------------------------
# 5. numpy + onnxruntime greedy loop (what the Rust side must re-implement)
# ----------------------------------------------------------------------------------------------
def apply_guards(seqs: list[list[int]], logits: np.ndarray, ngram: int, penalty: float) -> np.ndarray:
    logits = logits.astype(np.float32, copy=True)
    for b, ids in enumerate(seqs):
        if penalty != 1.0:  # transformers RepetitionPenaltyLogitsProcessor (runs first)
            for t in set(ids):
                s = logits[b, t]
                logits[b, t] = s * np.float32(penalty) if s < 0 else s / np.float32(penalty)
        if ngram > 0:  # transformers NoRepeatNGramLogitsProcessor
            cur = len(ids)
            if cur + 1 >= ngram:
                key = tuple(ids[cur - ngram + 1 :]) if ngram > 1 else ()
                for i in range(cur - ngram + 1):
                    if tuple(ids[i : i + ngram - 1]) == key:
                        logits[b, ids[i + ngram - 1]] = -np.inf
    return logits


class OrtVed:
    def __init__(self, layout_dir: Path):
        import onnxruntime as ort

        so = ort.SessionOptions()
        so.intra_op_num_threads = 1
        so.inter_op_num_threads = 1
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.dir = layout_dir
        mk = lambda n: ort.InferenceSession(str(layout_dir / n), so, providers=["CPUExecutionProvider"])  # noqa: E731
        self.encoder = mk("encoder_model.onnx")
        self.merged = mk("decoder_model_merged.onnx") if (layout_dir / "decoder_model_merged.onnx").exists() else None
        if self.merged is None:
            self.decoder = mk("decoder_model.onnx")
            self.decoder_wp = mk("decoder_with_past_model.onnx")
        cfg = json.loads((layout_dir / "config.json").read_text())["decoder"]
        self.n_layers = cfg["decoder_layers"]
        self.n_heads = cfg["decoder_attention_heads"]
        self.head_dim = cfg["d_model"] // cfg["decoder_attention_heads"]

    def sessions(self) -> dict:
        if self.merged is not None:
            return {"encoder_model.onnx": self.encoder, "decoder_model_merged.onnx": self.merged}
        return {
            "encoder_model.onnx": self.encoder,
            "decoder_model.onnx": self.decoder,
            "decoder_with_past_model.onnx": self.decoder_wp,
        }

    def greedy(self, pixel_values: np.ndarray, prompt: list[int], ngram: int, penalty: float) -> dict:
        b = pixel_values.shape[0]
        (enc,) = self.encoder.run(["last_hidden_state"], {"pixel_values": pixel_values})
        seqs = [list(prompt) for _ in range(b)]
        done = [False] * b
        past: dict[str, np.ndarray] = {}
        cross: dict[str, np.ndarray] = {}
        step_logits = []
        for step in range(MAX_NEW_TOKENS):
            if step == 0:
                ids = np.array(seqs, dtype=np.int64)  # whole prompt at once
            else:
                ids = np.array([[s[-1]] for s in seqs], dtype=np.int64)
            if self.merged is not None:
                sess = self.merged
                feeds = {"input_ids": ids, "encoder_hidden_states": enc, "use_cache_branch": np.array([step > 0])}
                empty = np.zeros((b, self.n_heads, 0, self.head_dim), dtype=np.float32)
                for i in range(self.n_layers):
                    for kind in ("decoder", "encoder"):
                        for kv in ("key", "value"):
                            name = f"past_key_values.{i}.{kind}.{kv}"
                            if step == 0:
                                feeds[name] = empty
                            elif kind == "decoder":
                                feeds[name] = past[f"present.{i}.decoder.{kv}"]
                            else:
                                feeds[name] = cross[f"present.{i}.encoder.{kv}"]
            else:
                sess = self.decoder if step == 0 else self.decoder_wp
                feeds = {"input_ids": ids, "encoder_hidden_states": enc}
                if step > 0:
                    for i in range(self.n_layers):
                        for kv in ("key", "value"):
                            feeds[f"past_key_values.{i}.decoder.{kv}"] = past[f"present.{i}.decoder.{kv}"]
                            feeds[f"past_key_values.{i}.encoder.{kv}"] = cross[f"present.{i}.encoder.{kv}"]
            in_names = {i.name for i in sess.get_inputs()}
            feeds = {k: v for k, v in feeds.items() if k in in_names}
            assert set(feeds) == in_names, (set(feeds) ^ in_names)
            out_names = [o.name for o in sess.get_outputs()]
            outs = dict(zip(out_names, sess.run(out_names, feeds)))
            logits = outs["logits"][:, -1, :].astype(np.float32)
            step_logits.append(logits)
            past = {k: v for k, v in outs.items() if ".decoder." in k}
            if step == 0:
                cross = {k: v for k, v in outs.items() if ".encoder." in k}
            scores = apply_guards(seqs, logits, ngram, penalty)
            nxt = scores.argmax(axis=-1)  # first index among ties, like torch.argmax
            for r in range(b):
                tok = int(nxt[r]) if not done[r] else PAD_ID
                seqs[r].append(tok)
                if tok == EOS_ID:
                    done[r] = True
            if all(done):
                break
        return {"sequences": seqs, "step_logits": step_logits}


# ----------------------------------------------------------------------------------------------
# 6. main
# ----------------------------------------------------------------------------------------------
def describe_session(sess) -> dict:
    def io(x):
        return {"name": x.name, "type": x.type, "shape": [d if isinstance(d, int) else str(d) for d in x.shape]}

    return {"inputs": [io(x) for x in sess.get_inputs()], "outputs": [io(x) for x in sess.get_outputs()]}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", type=Path, default=Path.home() / ".cache" / "docfleet" / "vlm-work")
    ap.add_argument("--out", type=Path, default=FIXTURES)
    ap.add_argument(
        "--search",
        action="store_true",
        help="re-run the (seed, eos_scale) search instead of using CHOSEN (slow: a few minutes)",
    )
    args = ap.parse_args()

    import onnx
    import onnxruntime
    import optimum
    import tokenizers
    import transformers
    from transformers import VisionEncoderDecoderModel

    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(1)

    out: Path = args.out
    work: Path = args.work
    model_name = "tiny-ved"
    for p in (out / "images", out / model_name, out / "preprocess", out / "bad"):
        if p.exists():
            shutil.rmtree(p)
    (out / "images").mkdir(parents=True, exist_ok=True)
    work.mkdir(parents=True, exist_ok=True)

    # --- tokenizer
    corpus = build_corpus()
    tok = train_tokenizer(corpus)
    hf_tok = make_hf_tokenizer(tok)
    log(f"tokenizer: vocab={tok.get_vocab_size()}")

    # --- images + preprocessing
    proc = make_image_processor()
    images = make_images()
    names = list(images)
    image_meta = []
    for n in names:
        path = out / "images" / f"{n}.png"
        images[n].save(path, format="PNG", optimize=False)
        # Re-load from disk so that the reference is computed from exactly what is committed.
        images[n] = Image.open(path).convert("RGB")
        image_meta.append({"name": n, "file": f"images/{n}.png", "sha256": sha256_file(path)})
    pv_np = proc([images[n] for n in names], return_tensors="np")["pixel_values"].astype(np.float32)
    assert pv_np.shape == (len(names), 3, IMG_H, IMG_W), pv_np.shape
    for i, n in enumerate(names):
        single = proc(images[n], return_tensors="np")["pixel_values"][0]
        assert np.array_equal(single, pv_np[i])
        image_meta[i]["preprocessing"] = preprocessing_trace(images[n])
        x = pv_np[i]
        image_meta[i]["pixel_values_stats"] = {
            "sum": float(x.astype(np.float64).sum()),
            "mean": float(x.astype(np.float64).mean()),
            "min": float(x.min()),
            "max": float(x.max()),
            "first8_channel0_row0": [float(v) for v in x[0, 0, :8]],
            "center_pixel_rgb": [float(v) for v in x[:, IMG_H // 2, IMG_W // 2]],
        }
        # Check the documented geometry against the real processor: padded border == -1.0 exactly.
        tr = image_meta[i]["preprocessing"]
        inner = x[:, tr["pad_top"] : IMG_H - tr["pad_bottom"], tr["pad_left"] : IMG_W - tr["pad_right"]]
        assert inner.shape[1:] == (tr["after_thumbnail_wh"][1], tr["after_thumbnail_wh"][0])
        mask = np.ones((IMG_H, IMG_W), bool)
        mask[tr["pad_top"] : IMG_H - tr["pad_bottom"], tr["pad_left"] : IMG_W - tr["pad_right"]] = False
        assert np.all(x[:, mask] == -1.0)
    np.save(out / "pixel_values.npy", pv_np)
    pv = torch.from_numpy(pv_np)

    # --- model search
    chosen = None
    tried = 0
    for seed in SEEDS if args.search else []:
        for eos_scale in EOS_SCALES:
            tried += 1
            model = build_model(seed, eos_scale)
            ok, why, _ = check_candidate(model, pv)
            if ok:
                chosen = (seed, eos_scale)
                break
            log(f"seed={seed} eos_scale={eos_scale}: {why}")
        if chosen:
            break
    if args.search:
        if chosen is None:
            raise SystemExit("no (seed, eos_scale) candidate passed the checks")
        log(f"search: first passing candidate seed={chosen[0]} eos_scale={chosen[1]} after {tried} tries")
        if chosen != CHOSEN:
            log(f"NOTE: differs from CHOSEN={CHOSEN}; update CHOSEN to make it the default")
    else:
        chosen = CHOSEN
    seed, eos_scale = chosen
    model = build_model(seed, eos_scale)
    ok, why, _ = check_candidate(model, pv)
    assert ok, f"CHOSEN={chosen} fails the fixture checks: {why}"
    log(f"using seed={seed} eos_scale={eos_scale}")

    # --- save HF checkpoint (scratch) + export
    hf_dir = work / "hf"
    if hf_dir.exists():
        shutil.rmtree(hf_dir)
    model.generation_config = make_generation_config("default")
    model.save_pretrained(hf_dir)
    model.generation_config = make_generation_config("no_guard")  # see build_model()
    hf_tok.save_pretrained(hf_dir)
    proc.save_pretrained(hf_dir)
    # Sanity: the reloaded checkpoint generates the same.
    reloaded = VisionEncoderDecoderModel.from_pretrained(hf_dir).eval()
    assert reloaded.generation_config.no_repeat_ngram_size == NO_REPEAT_NGRAM
    reloaded.generation_config = make_generation_config("no_guard")
    a = hf_generate(model, pv, OCR_PROMPT, "default")["sequences"]
    b = hf_generate(reloaded, pv, OCR_PROMPT, "default")["sequences"]
    assert a == b, "reloaded checkpoint differs"

    # One optimum export (with its default post-processing) writes encoder_model.onnx,
    # decoder_model.onnx, decoder_with_past_model.onnx AND decoder_model_merged.onnx into one folder;
    # the fixture splits them into the two layouts a loader meets in the wild.
    raw = work / "onnx"
    export_onnx(hf_dir, raw, no_post_process=False)
    raw_files = sorted(p.name for p in raw.iterdir())
    log("optimum export:", raw_files)

    side_files = [
        "config.json",
        "generation_config.json",
        "preprocessor_config.json",
        "tokenizer.json",
        "tokenizer_config.json",
        "special_tokens_map.json",
    ]
    layouts = {
        "merged": (raw, ["encoder_model.onnx", "decoder_model_merged.onnx"]),
        "split": (raw, ["encoder_model.onnx", "decoder_model.onnx", "decoder_with_past_model.onnx"]),
    }
    for layout, (src, onnx_files) in layouts.items():
        dst = out / model_name / layout
        dst.mkdir(parents=True, exist_ok=True)
        for f in onnx_files + side_files:
            s = src / f
            if not s.exists():
                s = hf_dir / f
            shutil.copyfile(s, dst / f)
            if f.endswith(".onnx"):
                # external data would make the fixture fragile; the tiny model must be self-contained
                m = onnx.load(str(dst / f), load_external_data=False)
                assert not any(
                    t.data_location == onnx.TensorProto.EXTERNAL for t in m.graph.initializer
                ), f"{f} uses external data"

    # --- transformers references
    refs = {"single": {}, "batched": {}}
    for variant in VARIANTS:
        for pname, prompt in PROMPTS.items():
            key = f"{variant}/{pname}"
            singles = []
            for i, n in enumerate(names):
                r = hf_generate(model, pv[i : i + 1], prompt, variant)["rows"][0]
                gen = r["generated"]
                singles.append(
                    {
                        "image": n,
                        "decoder_input_ids": prompt,
                        "sequence": r["sequence"],
                        "generated_ids": gen,
                        "num_generated": len(gen),
                        "finish_reason": r["finish_reason"],
                        "text": hf_tok.decode(r["sequence"], skip_special_tokens=True),
                        "text_with_special": hf_tok.decode(r["sequence"], skip_special_tokens=False),
                        "min_top2_margin": r["min_margin"],
                    }
                )
                assert singles[-1]["text"] == tok.decode(r["sequence"], skip_special_tokens=True)
            refs["single"][key] = singles
            bat = hf_generate(model, pv, prompt, variant)
            brow = []
            for i, n in enumerate(names):
                r = bat["rows"][i]
                brow.append({"image": n, "generated_ids": r["generated"], "finish_reason": r["finish_reason"]})
            refs["batched"][key] = {
                "images": names,
                "decoder_input_ids": [prompt] * len(names),
                "sequences": bat["sequences"],
                "rows": brow,
                "matches_single": [brow[i]["generated_ids"] == singles[i]["generated_ids"] for i in range(len(names))],
            }

    # --- ONNX greedy cross-check
    onnx_check = {}
    sessions_desc = {}
    mismatches = []
    for layout in layouts:
        ved = OrtVed(out / model_name / layout)
        sessions_desc[layout] = {k: describe_session(s) for k, s in ved.sessions().items()}
        enc_out = ved.encoder.run(["last_hidden_state"], {"pixel_values": pv_np})[0]
        with torch.no_grad():
            enc_pt = model.encoder(pixel_values=pv).last_hidden_state.numpy()
        max_logit_diff = 0.0
        res = {"encoder_max_abs_diff_vs_torch": float(np.abs(enc_out - enc_pt).max()), "cases": {}}
        for variant, v in VARIANTS.items():
            for pname, prompt in PROMPTS.items():
                key = f"{variant}/{pname}"
                ok_single = []
                for i, n in enumerate(names):
                    g = ved.greedy(pv_np[i : i + 1], prompt, v["no_repeat_ngram_size"], v["repetition_penalty"])
                    want = refs["single"][key][i]["sequence"]
                    ok_single.append(g["sequences"][0] == want)
                    if not ok_single[-1]:
                        mismatches.append((layout, key, "single", n, g["sequences"][0], want))
                    # logits vs torch on the same token path (teacher forcing)
                    with torch.no_grad():
                        seq = torch.tensor([want[:-1]])
                        lg = model(pixel_values=pv[i : i + 1], decoder_input_ids=seq).logits[0].numpy()
                    for t, sl in enumerate(g["step_logits"]):
                        max_logit_diff = max(max_logit_diff, float(np.abs(sl[0] - lg[len(prompt) - 1 + t]).max()))
                g = ved.greedy(pv_np, prompt, v["no_repeat_ngram_size"], v["repetition_penalty"])
                want_b = refs["batched"][key]["sequences"]
                ok_batch = g["sequences"] == want_b
                if not ok_batch:
                    mismatches.append((layout, key, "batched", None, g["sequences"], want_b))
                res["cases"][key] = {"single_match": ok_single, "batched_match": ok_batch}
        res["max_abs_logit_diff_vs_torch"] = max_logit_diff
        onnx_check[layout] = res
        log(f"{layout}: encoder diff {res['encoder_max_abs_diff_vs_torch']:.2e}, logits diff {max_logit_diff:.2e}")

    merged_facts = probe_merged_decoder(out / model_name / "merged", pv_np[:2])
    log("merged decoder facts:", merged_facts)
    encoder_facts = probe_encoder(out / model_name / "merged", model)
    log("encoder facts:", encoder_facts)
    vit_meta = write_vit_preprocessing(out, images, names)
    extra_meta = write_preprocess_cases(out)
    prompt_refs = prompt_references(model, hf_tok, pv, names)
    error_meta = write_error_cases(out, proc, model, hf_tok, pv)

    # Optional extra cross-check with optimum's own ORTModelForVision2Seq.generate.
    optimum_check = {}
    try:
        from optimum.onnxruntime import ORTModelForVision2Seq

        for layout in layouts:
            d = out / model_name / layout
            m = ORTModelForVision2Seq.from_pretrained(d, use_cache=True)
            m.generation_config = make_generation_config("no_guard")  # see build_model()
            got = {}
            for variant in VARIANTS:
                for pname, prompt in PROMPTS.items():
                    key = f"{variant}/{pname}"
                    seq = m.generate(
                        pixel_values=pv,
                        decoder_input_ids=torch.tensor([prompt] * len(names)),
                        generation_config=make_generation_config(variant),
                    ).tolist()
                    got[key] = seq == refs["batched"][key]["sequences"]
            optimum_check[layout] = got
    except Exception as e:  # informational only
        optimum_check = {"error": repr(e)}
    log("optimum ORTModelForVision2Seq check:", optimum_check)

    # --- write reference.json
    files = {}
    for p in sorted(out.rglob("*")):
        if p.is_file() and p.name not in ("reference.json", "README.md"):
            files[str(p.relative_to(out))] = {"bytes": p.stat().st_size, "sha256": sha256_file(p)}
    onnx_opsets = {}
    for layout, (_, onnx_files) in layouts.items():
        for f in onnx_files:
            m = onnx.load(str(out / model_name / layout / f))
            onnx_opsets[f"{layout}/{f}"] = {o.domain or "ai.onnx": o.version for o in m.opset_import}

    reference = {
        "about": "Reference outputs for tests/fixtures/vlm, generated by scripts/vlm/generate_tiny_vlm.py. See README.md.",
        "versions": {
            "python": sys.version.split()[0],
            "torch": torch.__version__,
            "transformers": transformers.__version__,
            "optimum": getattr(optimum, "__version__", None) or _pkg_version("optimum"),
            "optimum-onnx": _pkg_version("optimum-onnx"),
            "onnx": onnx.__version__,
            "onnxruntime": onnxruntime.__version__,
            "tokenizers": tokenizers.__version__,
            "pillow": Image.__version__,
            "numpy": np.__version__,
        },
        "model": {
            "name": model_name,
            "dirs": {"merged": f"{model_name}/merged", "split": f"{model_name}/split"},
            "seed": seed,
            "eos_scale": eos_scale,
            "encoder": {
                "type": "donut-swin",
                "image_size_hw": [IMG_H, IMG_W],
                "patch_size": 4,
                "embed_dim": ENC_EMBED_DIM,
                "depths": [2, 2],
                "num_heads": [2, 4],
                "window_size": 4,
                "hidden_size": D_MODEL,
                "sequence_length": (IMG_H // 8) * (IMG_W // 8),
            },
            "decoder": {
                "type": "mbart (MBartForCausalLM)",
                "d_model": D_MODEL,
                "layers": DEC_LAYERS,
                "attention_heads": DEC_HEADS,
                "head_dim": D_MODEL // DEC_HEADS,
                "ffn_dim": DEC_FFN,
                "max_position_embeddings": MAX_POS,
                "vocab_size": VOCAB_SIZE,
            },
            "num_parameters": sum(p.numel() for p in model.parameters()),
            "onnx_opsets": onnx_opsets,
        },
        "tokenizer": {
            "type": "byte-level BPE (tokenizers), trained on an embedded corpus",
            "vocab_size": tok.get_vocab_size(),
            "special_tokens": {t: i for i, t in enumerate(SPECIAL_TOKENS)},
            "examples": _tokenizer_examples(tok),
        },
        "generation": {
            "decoder_start_token_id": DECODER_START_ID,
            "eos_token_id": EOS_ID,
            "pad_token_id": PAD_ID,
            "max_new_tokens": MAX_NEW_TOKENS,
            "prompts": PROMPTS,
            "variants": VARIANTS,
            "default_variant_is_generation_config_json": True,
        },
        "images": image_meta,
        "pixel_values": {
            "file": "pixel_values.npy",
            "dtype": "float32",
            "shape": list(pv_np.shape),
            "order": names,
            "layout": "NCHW, C order, little-endian; batch row i == image i in 'order' (single-image preprocessing gives the identical row)",
        },
        "references": refs,
        "onnx_sessions": sessions_desc,
        "optimum_export_files": raw_files,
        "merged_decoder_facts": merged_facts,
        "encoder_facts": encoder_facts,
        "vit_preprocessing": vit_meta,
        "preprocess_cases": extra_meta,
        "text_prompt_references": prompt_refs,
        "error_cases": error_meta,
        "onnx_greedy_check": onnx_check,
        "onnx_greedy_mismatches": [
            {"layout": m[0], "case": m[1], "mode": m[2], "image": m[3], "got": m[4], "want": m[5]} for m in mismatches
        ],
        "optimum_ortmodel_check": optimum_check,
        "files": files,
    }
    (out / "reference.json").write_text(json.dumps(reference, indent=1, ensure_ascii=False) + "\n")
    total = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    log(f"wrote {out} ({total / 1e6:.2f} MB)")
    if mismatches:
        log(f"WARNING: {len(mismatches)} ONNX/transformers mismatches recorded in reference.json")
        sys.exit(2)


def _merged_feeds(sess, b, n_layers, n_heads, head_dim, ids, enc, use_cache, past_len=0, past=None):
    feeds = {"input_ids": ids, "encoder_hidden_states": enc, "use_cache_branch": np.array([use_cache])}
    z = np.zeros((b, n_heads, past_len, head_dim), dtype=np.float32)
    for i in range(n_layers):
        for kind in ("decoder", "encoder"):
            for kv in ("key", "value"):
                name = f"past_key_values.{i}.{kind}.{kv}"
                feeds[name] = past[f"present.{i}.{kind}.{kv}"] if past is not None else z
    return feeds


def probe_merged_decoder(d: Path, pv: np.ndarray) -> dict:
    """Facts about decoder_model_merged.onnx that a re-implementation relies on."""
    ved = OrtVed(d)
    s = ved.merged
    names = [o.name for o in s.get_outputs()]
    b = pv.shape[0]
    (enc,) = ved.encoder.run(["last_hidden_state"], {"pixel_values": pv})
    L, H, D = ved.n_layers, ved.n_heads, ved.head_dim
    ids0 = np.array([OCR_PROMPT] * b, dtype=np.int64)
    o0 = dict(zip(names, s.run(names, _merged_feeds(s, b, L, H, D, ids0, enc, False, 0))))
    o0b = dict(zip(names, s.run(names, _merged_feeds(s, b, L, H, D, ids0, enc, False, 1))))
    ids1 = np.array([[7]] * b, dtype=np.int64)
    f1 = _merged_feeds(s, b, L, H, D, ids1, enc, True, past={k: v for k, v in o0.items() if k != "logits"})
    o1 = dict(zip(names, s.run(names, f1)))
    f1b = dict(f1)
    f1b["encoder_hidden_states"] = np.zeros((b, 1, enc.shape[2]), dtype=np.float32)
    o1b = dict(zip(names, s.run(names, f1b)))
    return {
        "first_step_present_shapes": {k: list(v.shape) for k, v in o0.items()},
        "first_step_past_values_ignored_when_use_cache_branch_false": bool(
            np.array_equal(o0["logits"], o0b["logits"])
        ),
        "cache_step_present_shapes": {k: list(v.shape) for k, v in o1.items()},
        "cache_step_present_encoder_is_dummy": all(
            o1[f"present.{i}.encoder.key"].size == 0 for i in range(L)
        ),
        "cache_step_encoder_hidden_states_unused": bool(np.array_equal(o1["logits"], o1b["logits"])),
    }


def probe_encoder(d: Path, model) -> dict:
    """The Swin encoder is traced at the preprocessor size: other input sizes may fail or be wrong."""
    import copy

    import onnxruntime as ort

    # Swin layers shrink their window for small inputs *in place* (set_shift_and_window_size), so probing
    # 32x32 would change every later generation of `model`: probe a copy.
    model = copy.deepcopy(model)

    so = ort.SessionOptions()
    so.log_severity_level = 4
    sess = ort.InferenceSession(str(d / "encoder_model.onnx"), so, providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    facts = {}
    for h, w in [(IMG_H, IMG_W), (80, 64), (72, 56), (32, 32)]:
        x = rng.standard_normal((1, 3, h, w)).astype(np.float32)
        with torch.no_grad():
            t = model.encoder(pixel_values=torch.from_numpy(x)).last_hidden_state.numpy()
        try:
            (o,) = sess.run(["last_hidden_state"], {"pixel_values": x})
        except Exception:  # noqa: BLE001
            facts[f"{h}x{w}"] = "onnxruntime error"
            continue
        if o.shape != t.shape:
            facts[f"{h}x{w}"] = f"runs, wrong shape {list(o.shape)} vs torch {list(t.shape)}"
        else:
            diff = float(np.abs(o - t).max())
            facts[f"{h}x{w}"] = f"runs, shape {list(o.shape)}, max abs diff vs torch {diff:.3g}" + (
                " (WRONG)" if diff > 1e-3 else ""
            )
    return facts


def write_vit_preprocessing(out: Path, images: dict, names: list[str]) -> dict:
    """Extra preprocessing-only fixture for TrOCR-style (ViTImageProcessor) models."""
    from transformers import ViTImageProcessor

    d = out / "preprocess"
    if d.exists():
        shutil.rmtree(d)
    d.mkdir(parents=True)
    vp = ViTImageProcessor(
        do_resize=True,
        size={"height": IMG_H, "width": IMG_W},
        resample=2,
        do_rescale=True,
        rescale_factor=1 / 255,
        do_normalize=True,
        image_mean=[0.485, 0.456, 0.406],
        image_std=[0.229, 0.224, 0.225],
    )
    vp.to_json_file(str(d / "vit_preprocessor_config.json"))
    pv = vp([images[n] for n in names], return_tensors="np")["pixel_values"].astype(np.float32)
    np.save(d / "vit_pixel_values.npy", pv)
    return {
        "config": "preprocess/vit_preprocessor_config.json",
        "file": "preprocess/vit_pixel_values.npy",
        "shape": list(pv.shape),
        "order": names,
        "note": "ViTImageProcessor (TrOCR-style): plain resize of the whole image to (height, width) with PIL "
        "BILINEAR (aspect ratio NOT kept, no padding), then x/255, then (x-mean[c])/std[c]. No model uses it; it "
        "only checks a Rust preprocessing implementation.",
        "stats": [
            {"image": n, "sum": float(pv[i].astype(np.float64).sum()), "first8_channel0_row0": [float(v) for v in pv[i, 0, 0, :8]]}
            for i, n in enumerate(names)
        ],
    }


# ----------------------------------------------------------------------------------------------
# 7. Extra fixtures: preprocessing corner cases, PIL resampling, text prompts, error cases
# ----------------------------------------------------------------------------------------------
def make_extra_images() -> dict[str, Image.Image]:
    """Shapes that take the other branches of the Donut steps (see preprocess_cases in reference.json)."""
    font = _font()
    imgs = {}
    # tall_receipt: 40x400; the thumbnail step shrinks 48x480 to 6x64, so PIL reduces (4x3) before resampling.
    im = Image.new("RGB", (40, 400), (245, 245, 235))
    d = ImageDraw.Draw(im)
    for i in range(18):
        d.text((2, 4 + i * 22), f"{i:02d}x", fill=(10 + 12 * i, 20, 40), font=font)
    imgs["tall_receipt"] = im
    # wide_strip: 600x30; 960x48 -> 48x2, a 10x12 reduction first.
    x = np.linspace(0, 255, 600)[None, :, None]
    y = np.linspace(0, 255, 30)[:, None, None]
    arr = np.concatenate([np.broadcast_to(x, (30, 600, 1)), np.broadcast_to(y, (30, 600, 1)),
                          np.broadcast_to((x + y) % 256, (30, 600, 1))], axis=-1).astype(np.uint8)
    imgs["wide_strip"] = Image.fromarray(arr, "RGB")
    # exact: already 48x64, so resize and thumbnail leave it alone (the copy paths).
    rng = np.random.default_rng(IMAGE_SEED + 1)
    imgs["exact"] = Image.fromarray(rng.integers(0, 256, size=(64, 48, 3), dtype=np.uint8), "RGB")
    # landscape: 90x60, turned upright by do_align_long_axis in the second processor variant.
    im = Image.new("RGB", (90, 60), (255, 255, 255))
    d = ImageDraw.Draw(im)
    d.rectangle((5, 5, 40, 30), fill=(200, 30, 30))
    d.text((45, 40), "ROT", fill=(0, 0, 0), font=font)
    imgs["landscape"] = im
    return imgs


# Processor variants for the extra cases. The second is written with `size` as a [width, height] list, the
# form older Donut checkpoints use, plus long-axis alignment, BICUBIC and ImageNet mean/std.
EXTRA_PROCESSORS = {
    "donut_default": None,  # preprocessor_config.json of the model
    "donut_list_size_align_bicubic": {
        "image_processor_type": "DonutImageProcessor",
        "do_align_long_axis": True,
        "do_normalize": True,
        "do_pad": True,
        "do_rescale": True,
        "do_resize": True,
        "do_thumbnail": True,
        "image_mean": [0.485, 0.456, 0.406],
        "image_std": [0.229, 0.224, 0.225],
        "resample": 3,
        "rescale_factor": 1 / 255,
        "size": [IMG_W, IMG_H],
    },
}

# (source image, output (w, h), reducing_gap) for the plain PIL resize cases; every filter 0-5 runs each.
RESIZE_CASES = [
    ("receipt", (17, 23), None),
    ("receipt", (97, 61), None),
    ("receipt", (48, 5), None),
    ("noise", (17, 23), None),
    ("noise", (97, 61), None),
    ("noise", (5, 48), None),
    ("receipt", (13, 9), 2.0),
    ("receipt", (7, 50), 3.0),
    ("noise", (7, 11), 2.0),
]


def write_preprocess_cases(out: Path) -> dict:
    """Inputs and transformers/PIL outputs that pin a re-implementation of the Donut steps and of PIL's
    resampling down to the last bit (no model involved)."""
    from transformers import DonutImageProcessor

    d = out / "preprocess"
    (d / "images").mkdir(parents=True, exist_ok=True)
    extra = make_extra_images()
    loaded = {}
    for n, im in extra.items():
        im.save(d / "images" / f"{n}.png", format="PNG", optimize=False)
        loaded[n] = Image.open(d / "images" / f"{n}.png").convert("RGB")
    meta = {"images": {n: f"preprocess/images/{n}.png" for n in extra}, "processors": {}, "resize": {}}
    names = list(extra)
    for pname, cfg in EXTRA_PROCESSORS.items():
        if cfg is None:
            proc = make_image_processor()
            cfg_file = "tiny-ved/merged/preprocessor_config.json"
        else:
            cfg_file = f"preprocess/{pname}.json"
            (out / cfg_file).write_text(json.dumps(cfg, indent=2) + "\n")
            proc = DonutImageProcessor.from_dict(dict(cfg))
        pv = proc([loaded[n] for n in names], return_tensors="np")["pixel_values"].astype(np.float32)
        np.save(d / f"{pname}_pixel_values.npy", pv)
        meta["processors"][pname] = {"config": cfg_file, "file": f"preprocess/{pname}_pixel_values.npy",
                                     "order": names, "shape": list(pv.shape)}

    # Plain PIL resizes (as transformers calls them: Image.resize(size, resample, reducing_gap=...)).
    src = {"receipt": Image.open(out / "images" / "receipt.png").convert("RGB"),
           "noise": Image.open(out / "images" / "noise.png").convert("RGB")}
    blob = bytearray()
    cases = []
    for name, (w, h), gap in RESIZE_CASES:
        for flt in range(6):
            r = src[name].resize((w, h), resample=flt, reducing_gap=gap)
            data = np.asarray(r, dtype=np.uint8).tobytes()
            cases.append({"image": f"images/{name}.png", "size_wh": [w, h], "resample": flt,
                          "reducing_gap": gap, "offset": len(blob), "bytes": len(data)})
            blob += data
    (d / "pil_resize.bin").write_bytes(bytes(blob))
    meta["resize"] = {"file": "preprocess/pil_resize.bin", "layout": "RGB rows, top to bottom, one case after the other",
                      "pil_filters": "0 NEAREST, 1 LANCZOS, 2 BILINEAR, 3 BICUBIC, 4 BOX, 5 HAMMING", "cases": cases}
    return meta


# Task prompts given as text, tokenised by the model's tokenizer without special tokens (what a job's
# `prompt` parameter goes through). Donut-style models take them verbatim as decoder_input_ids.
# "ocr_tag" spells the <s_ocr> prompt of the main references; "with_text" is the first candidate with plain
# words after the task tag whose greedy steps all keep a MIN_MARGIN argmax gap.
TEXT_PROMPTS = {"ocr_tag": ["<s><s_ocr>"]}
TEXT_PROMPT_CANDIDATES = [
    "<s><s_ocr>Total:",
    "<s><s_ocr>Invoice",
    "<s><s_ocr>Dear",
    "<s><s_caption>A photo of",
    "<s><s_ocr>Page",
    "<s><s_caption>The",
    "<s>Tel:",
    "<s><s_caption>",
]


def prompt_references(model, hf_tok, pv: torch.Tensor, names: list[str]) -> dict:
    res = {"variant": "default", "cases": {}, "candidates_tried": []}
    groups = dict(TEXT_PROMPTS)
    groups["with_text"] = TEXT_PROMPT_CANDIDATES
    for key, texts in groups.items():
        for text in texts:
            ids = hf_tok(text, add_special_tokens=False)["input_ids"]
            singles = []
            for i, n in enumerate(names):
                r = hf_generate(model, pv[i : i + 1], ids, "default")["rows"][0]
                singles.append({"image": n, "sequence": r["sequence"], "generated_ids": r["generated"],
                                "finish_reason": r["finish_reason"], "min_top2_margin": r["min_margin"],
                                "text": hf_tok.decode(r["sequence"], skip_special_tokens=True)})
            margin = min(x["min_top2_margin"] for x in singles)
            res["candidates_tried"].append({"group": key, "prompt": text, "min_top2_margin": margin})
            if margin < MIN_MARGIN:
                log(f"text prompt {text!r}: margin {margin:.2e} < {MIN_MARGIN}")
                continue
            bat = hf_generate(model, pv, ids, "default")
            res["cases"][key] = {"prompt": text, "decoder_input_ids": ids, "single": singles,
                                 "batched_sequences": bat["sequences"]}
            break
        else:
            raise SystemExit(f"no text prompt for {key!r} keeps the argmax margin; add candidates")
    return res


def write_error_cases(out: Path, proc, model, hf_tok, pv: torch.Tensor) -> dict:
    """Inputs the pipeline must refuse, with what the Python side does with them."""
    d = out / "bad"
    d.mkdir(parents=True, exist_ok=True)
    # 400x2: resized to 9600x48, the thumbnail would be 48x0 pixels.
    Image.new("RGB", (400, 2), (128, 64, 32)).save(d / "too_thin.png", format="PNG", optimize=False)
    try:
        proc(Image.open(d / "too_thin.png").convert("RGB"), return_tensors="np")
        thin = "no error"
    except Exception as e:  # noqa: BLE001
        thin = f"{type(e).__name__}: {e}"
    long_text = "<s_ocr>" * (MAX_POS + 6)
    long_ids = hf_tok(long_text, add_special_tokens=False)["input_ids"]
    try:
        hf_generate(model, pv[:1], long_ids, "default")
        long_err = "no error"
    except Exception as e:  # noqa: BLE001
        long_err = f"{type(e).__name__}: {str(e).splitlines()[0][:200]}"
    return {
        "unpreprocessable_image": {"file": "bad/too_thin.png", "size_wh": [400, 2], "python_error": thin},
        "prompt_too_long": {"prompt": long_text, "num_tokens": len(long_ids),
                            "max_position_embeddings": MAX_POS, "transformers_error": long_err},
    }


def _pkg_version(name: str):
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(name)
    except PackageNotFoundError:
        return None


def _tokenizer_examples(tok: Tokenizer) -> list[dict]:
    ex = []
    for text in ["Total: $8.45", "Invoice No. 1234", "hello world", "<s_ocr>"]:
        e = tok.encode(text, add_special_tokens=False)
        ex.append({"text": text, "ids_no_special": e.ids, "tokens": e.tokens, "ids_with_special": tok.encode(text).ids})
    return ex


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Build a tiny random Florence-2 test fixture for docfleet.

Everything is created locally and deterministically (no Hugging Face hub access):

  1. a byte-level BPE tokenizer (trained on an embedded, generated corpus) with BART's special tokens
     (`<s>` 0, `<pad>` 1, `</s>` 2, `<unk>` 3), Florence-2's added tokens (`<od>`, `</od>`, `<ocr>`,
     `</ocr>`, `<poly>`, `</poly>`, `<sep>`, `<loc_0>` … `<loc_999>`, special as in the published
     tokenizer) and `<image>`;
  2. a tiny randomly initialised `Florence2ForConditionalGeneration` (transformers' native class: DaViT
     vision tower of four one-block stages, BART text model of 1 encoder and 2 decoder layers), seeded,
     with `CLIPImageProcessor` at 128 × 128 (published: 768 × 768) → 4 × 4 + 1 = 17 image tokens;
  3. the four ONNX graphs with the names of the onnx-community / transformers.js exports:
     `onnx/vision_encoder.onnx` (`pixel_values` → `image_features`), `onnx/embed_tokens.onnx`
     (`input_ids` → `inputs_embeds`), `onnx/encoder_model.onnx` (`inputs_embeds`, `attention_mask` →
     `last_hidden_state`) and `onnx/decoder_model_merged.onnx` (`encoder_attention_mask`,
     `encoder_hidden_states`, `inputs_embeds`, `past_key_values.{i}.{decoder,encoder}.{key,value}`,
     `use_cache_branch` → `logits`, `present.*`; optimum's `merge_decoders` of a first-step and a
     with-past decoder, both kept as `decoder_model.onnx` / `decoder_with_past_model.onnx`), each checked
     against torch;
  4. `onnx/*_fp16.onnx`: the same graphs in float16 (onnxconverter-common), with their own greedy references
     from the onnxruntime loop;
  5. references: `CLIPImageProcessor` pixel tensors (sha256 per page, one whole tensor), the task
     prompts the processor builds, greedy `model.generate` token ids single and batched for `<OCR>`,
     `<OCR_WITH_REGION>` and `<OD>` on pages of different sizes, each decoded and run through the
     processor's `post_process_generation`; the same post-processing on hand-built token sequences
     that exercise the `<loc_N>` parsers (the random model rarely emits well-formed regions); and a
     plain numpy + onnxruntime greedy loop re-checking the generated ids.

Usage (see tests/fixtures/vlm/florence2/README.md):

    ~/.cache/docfleet/vlm-venv/bin/python scripts/vlm/make_florence2.py

Writes only under tests/fixtures/vlm/florence2/.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
import shutil
import sys
from pathlib import Path

# Importing make_idefics3 first runs its preamble before torch loads: it pins PYTHONHASHSEED (optimum's
# decoder merge names initializers through set iteration, i.e. str hashing; this re-executes this script
# when unset), sets the offline Hugging Face environment and silences warnings.
sys.path.insert(0, str(Path(__file__).resolve().parent))
from make_idefics3 import log, onnx_signatures, save_npy, seed_all, sha256_file  # noqa: E402
from make_qwen2vl import _page  # noqa: E402  (the same page drawings)

import numpy as np  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
OUT = REPO / "tests" / "fixtures" / "vlm" / "florence2"

CORPUS_SEED = 2525
IMAGE_SEED = 5252
MODEL_SEED = 3
INIT_STD = 0.35
EOS_BIAS = 0.6
LOC_BIAS = 0.35  # make the random model emit <loc_N> tokens (and region answers)
BPE_VOCAB = 420
SIZE = 128
MEAN = [0.485, 0.456, 0.406]  # Florence-2's preprocessor_config.json (ImageNet)
STD = [0.229, 0.224, 0.225]
MAX_NEW_TOKENS = 24

SPECIALS = ["<s>", "<pad>", "</s>", "<unk>"]
BOS_ID, PAD_ID, EOS_ID, UNK_ID = range(4)
TASK_TOKENS = ["<od>", "</od>", "<ocr>", "</ocr>", "<poly>", "</poly>", "<sep>"]
LOCS = [f"<loc_{i}>" for i in range(1000)]
IMAGE_TOKEN = "<image>"

VISION = dict(depths=[1, 1, 1, 1], patch_size=[7, 3, 3, 3], patch_stride=[4, 2, 2, 2], patch_padding=[3, 1, 1, 1],
              patch_prenorm=[False, True, True, True], embed_dim=[16, 24, 32, 48], num_heads=[1, 2, 2, 4],
              num_groups=[1, 2, 2, 4], window_size=2, drop_path_rate=0.0, mlp_ratio=2.0, projection_dim=32,
              max_temporal_embeddings=10, max_position_embeddings=16)
TEXT = dict(d_model=32, encoder_layers=1, decoder_layers=2, encoder_attention_heads=2, decoder_attention_heads=2,
            encoder_ffn_dim=64, decoder_ffn_dim=64, max_position_embeddings=128, scale_embedding=False,
            dropout=0.0, attention_dropout=0.0, activation_dropout=0.0)

# The processor's task tables (Florence2Processor.__init__), written into preprocessor_config.json the way
# the onnx-community exports carry them for transformers.js.
TASK_PROMPTS_WITHOUT_INPUTS = {
    "<OCR>": "What is the text in the image?",
    "<OCR_WITH_REGION>": "What is the text in the image, with regions?",
    "<CAPTION>": "What does the image describe?",
    "<DETAILED_CAPTION>": "Describe in detail what is shown in the image.",
    "<MORE_DETAILED_CAPTION>": "Describe with a paragraph what is shown in the image.",
    "<OD>": "Locate the objects with category name in the image.",
    "<DENSE_REGION_CAPTION>": "Locate the objects in the image, with their descriptions.",
    "<REGION_PROPOSAL>": "Locate the region proposals in the image.",
}
TASK_PROMPTS_WITH_INPUT = {
    "<CAPTION_TO_PHRASE_GROUNDING>": "Locate the phrases in the caption: {input}",
    "<REFERRING_EXPRESSION_SEGMENTATION>": "Locate {input} in the image with mask",
    "<REGION_TO_SEGMENTATION>": "What is the polygon mask of region {input}",
    "<OPEN_VOCABULARY_DETECTION>": "Locate {input} in the image.",
    "<REGION_TO_CATEGORY>": "What is the region {input}?",
    "<REGION_TO_DESCRIPTION>": "What does the region {input} describe?",
    "<REGION_TO_OCR>": "What text is in the region {input}?",
}
TASKS_ANSWER_POST_PROCESSING_TYPE = {
    "<OCR>": "pure_text", "<OCR_WITH_REGION>": "ocr", "<CAPTION>": "pure_text",
    "<DETAILED_CAPTION>": "pure_text", "<MORE_DETAILED_CAPTION>": "pure_text", "<OD>": "description_with_bboxes",
    "<DENSE_REGION_CAPTION>": "description_with_bboxes", "<CAPTION_TO_PHRASE_GROUNDING>": "phrase_grounding",
    "<REFERRING_EXPRESSION_SEGMENTATION>": "polygons", "<REGION_TO_SEGMENTATION>": "polygons",
    "<OPEN_VOCABULARY_DETECTION>": "description_with_bboxes_or_polygons", "<REGION_TO_CATEGORY>": "pure_text",
    "<REGION_TO_DESCRIPTION>": "pure_text", "<REGION_TO_OCR>": "pure_text", "<REGION_PROPOSAL>": "bboxes",
}
# Florence-2's post_processor_config (the parse tasks its processor accepts; default patterns).
POST_PROCESSOR_CONFIG = {"ocr": {"AREA_THRESHOLD": 0.0}, "pure_text": {}, "description_with_bboxes": {},
                         "bboxes": {}, "phrase_grounding": {"banned_grounding_tokens": []}}

WORDS = ("invoice receipt document page table figure order payment customer account report letter form "
         "contract number date amount price item header footer caption section title paragraph list code "
         "what is the text in image with regions locate objects category name does describe detail shown "
         "a paragraph region proposals descriptions total car person dog").split()


def build_corpus() -> list[str]:
    rng = random.Random(CORPUS_SEED)
    lines = list(TASK_PROMPTS_WITHOUT_INPUTS.values()) * 20
    for _ in range(500):
        lines.append(" ".join(rng.choice(WORDS) for _ in range(rng.randrange(2, 10))).capitalize() + ".")
        lines.append(f"Total: ${rng.randint(1, 999)}.{rng.randint(0, 99):02d}")
    return lines


def train_tokenizer() -> Tokenizer:
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=BPE_VOCAB, min_frequency=2, special_tokens=SPECIALS,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(build_corpus(), trainer=trainer)
    tok.post_processor = processors.RobertaProcessing(sep=("</s>", EOS_ID), cls=("<s>", BOS_ID),
                                                      trim_offsets=True, add_prefix_space=False)
    for i, t in enumerate(SPECIALS):
        assert tok.token_to_id(t) == i, (t, tok.token_to_id(t))
    return tok


def make_processor():
    from transformers import BartTokenizerFast, CLIPImageProcessor, Florence2Processor

    tokenizer = BartTokenizerFast(
        tokenizer_object=train_tokenizer(), bos_token="<s>", eos_token="</s>", sep_token="</s>",
        cls_token="<s>", unk_token="<unk>", pad_token="<pad>", mask_token=None,
        additional_special_tokens=TASK_TOKENS + LOCS, extra_special_tokens={"image_token": IMAGE_TOKEN},
        model_max_length=TEXT["max_position_embeddings"], clean_up_tokenization_spaces=False)
    tokenizer.add_tokens([IMAGE_TOKEN], special_tokens=True)
    image_tokens = (SIZE // 32) ** 2 + 1
    ip = CLIPImageProcessor(do_resize=True, size={"height": SIZE, "width": SIZE}, resample=Image.BICUBIC,
                            do_center_crop=False, crop_size={"height": SIZE, "width": SIZE}, do_rescale=True,
                            rescale_factor=1 / 255, do_normalize=True, image_mean=MEAN, image_std=STD,
                            do_convert_rgb=True)
    ip.image_seq_length = image_tokens
    proc = Florence2Processor(image_processor=ip, tokenizer=tokenizer, post_processor_config=POST_PROCESSOR_CONFIG)
    assert proc.image_token_id == len(tokenizer) - 1, (proc.image_token_id, len(tokenizer))
    return proc


def make_pages() -> dict[str, Image.Image]:
    rng = np.random.default_rng(IMAGE_SEED)
    return {
        "a4_150dpi": _page(1240, 1754, rng),  # portrait, far larger than 128 × 128
        "landscape": _page(300, 200, rng),
        "tiny": _page(20, 30, rng),  # scaled up
        "strip_wide": _page(420, 50, rng),  # 8.4 : 1
    }


# ----------------------------------------------------------------------------------------------
# Model
# ----------------------------------------------------------------------------------------------
def build_model(proc):
    from transformers import Florence2Config, Florence2ForConditionalGeneration

    seed_all(MODEL_SEED)
    vocab = len(proc.tokenizer)
    text = dict(TEXT, model_type="bart", vocab_size=vocab, bos_token_id=BOS_ID, pad_token_id=PAD_ID,
                eos_token_id=EOS_ID, decoder_start_token_id=EOS_ID, forced_bos_token_id=BOS_ID,
                forced_eos_token_id=EOS_ID)
    cfg = Florence2Config(text_config=text, vision_config=VISION, image_token_id=proc.image_token_id,
                          bos_token_id=BOS_ID, pad_token_id=PAD_ID, eos_token_id=EOS_ID,
                          decoder_start_token_id=EOS_ID)
    cfg._attn_implementation = "eager"
    cfg.text_config._attn_implementation = "eager"
    model = Florence2ForConditionalGeneration(cfg).eval()
    g = torch.Generator().manual_seed(MODEL_SEED)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.dim() >= 2:
                fan_in = int(np.prod(p.shape[1:]))
                scale = INIT_STD if "shared" in name or "embed_tokens" in name else INIT_STD * math.sqrt(8.0 / fan_in)
                p.copy_(torch.randn(p.shape, generator=g) * scale)
            elif "norm" in name or "layernorm" in name:
                p.copy_(1.0 + 0.1 * torch.randn(p.shape, generator=g))
            else:
                p.copy_(0.05 * torch.randn(p.shape, generator=g))
        # BART ties lm_head to the shared embedding; final_logits_bias shifts the EOS and <loc_N> scores.
        bias = model.final_logits_bias if hasattr(model, "final_logits_bias") else None
        emb = model.get_input_embeddings().weight
        loc0 = proc.tokenizer.convert_tokens_to_ids("<loc_0>")
        emb[EOS_ID] *= 1.0 + EOS_BIAS
        emb[loc0:loc0 + 1000] *= 1.0 + LOC_BIAS
        if bias is not None:
            bias.zero_()
    model.generation_config.update(**generation_config_dict())
    return model


def generation_config_dict():
    # Florence-2's generation_config.json, greedy (published: num_beams 3, which docfleet does not do).
    return {"bos_token_id": BOS_ID, "decoder_start_token_id": EOS_ID, "eos_token_id": EOS_ID,
            "forced_bos_token_id": BOS_ID, "forced_eos_token_id": EOS_ID, "pad_token_id": PAD_ID,
            "no_repeat_ngram_size": 3, "num_beams": 1, "do_sample": False, "max_new_tokens": MAX_NEW_TOKENS,
            "use_cache": True}


# ----------------------------------------------------------------------------------------------
# ONNX wrappers
# ----------------------------------------------------------------------------------------------
class VisionEncoder(torch.nn.Module):
    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, pixel_values):
        return self.model.model.get_image_features(pixel_values)


class EmbedTokens(torch.nn.Module):
    def __init__(self, model):
        super().__init__()
        self.embed = model.get_input_embeddings()

    def forward(self, input_ids):
        return self.embed(input_ids)


class Encoder(torch.nn.Module):
    def __init__(self, model):
        super().__init__()
        self.encoder = model.model.language_model.encoder

    def forward(self, inputs_embeds, attention_mask):
        return self.encoder(inputs_embeds=inputs_embeds, attention_mask=attention_mask).last_hidden_state


class Decoder(torch.nn.Module):
    """First step (`with_past=False`): encoder states + prompt embeddings → logits and every present;
    cache steps: the last token's embedding and the past → logits and the growing (self-attention) presents."""

    def __init__(self, model, with_past: bool):
        super().__init__()
        self.decoder = model.model.language_model.decoder
        self.lm_head = model.lm_head
        self.bias = getattr(model, "final_logits_bias", None)
        self.n_layers = model.config.text_config.decoder_layers
        self.with_past = with_past

    def forward(self, encoder_attention_mask, encoder_hidden_states, inputs_embeds, *past):
        from transformers.cache_utils import DynamicCache, EncoderDecoderCache

        cache = EncoderDecoderCache(DynamicCache(), DynamicCache())
        if self.with_past:
            cache = EncoderDecoderCache.from_legacy_cache(
                tuple(tuple(past[4 * i: 4 * i + 4]) for i in range(self.n_layers)))
        out = self.decoder(inputs_embeds=inputs_embeds, encoder_hidden_states=encoder_hidden_states,
                           encoder_attention_mask=encoder_attention_mask, past_key_values=cache, use_cache=True)
        logits = self.lm_head(out.last_hidden_state)
        if self.bias is not None:
            logits = logits + self.bias
        presents = []
        pkv = out.past_key_values
        for i in range(self.n_layers):
            sa, ca = pkv.self_attention_cache.layers[i], pkv.cross_attention_cache.layers[i]
            presents += [sa.keys, sa.values]
            if not self.with_past:
                presents += [ca.keys, ca.values]
        return (logits, *presents)


def export_onnx(model, out: Path) -> dict:
    import onnx
    import onnxruntime as ort
    from optimum.onnx import merge_decoders

    onnx_dir = out / "onnx"
    onnx_dir.mkdir(parents=True, exist_ok=True)
    tc = model.config.text_config
    L, H, D = tc.decoder_layers, tc.decoder_attention_heads, tc.d_model // tc.decoder_attention_heads
    g = torch.Generator().manual_seed(7)
    kw = dict(opset_version=17, dynamo=False, do_constant_folding=True)
    with torch.no_grad():
        pv = torch.randn(2, 3, SIZE, SIZE, generator=g)
        torch.onnx.export(VisionEncoder(model).eval(), (pv,), str(onnx_dir / "vision_encoder.onnx"),
                          input_names=["pixel_values"], output_names=["image_features"],
                          dynamic_axes={"pixel_values": {0: "batch_size", 2: "height", 3: "width"},
                                        "image_features": {0: "batch_size", 1: "num_image_tokens"}}, **kw)
        ids = torch.randint(0, tc.vocab_size, (2, 5), generator=g)
        torch.onnx.export(EmbedTokens(model).eval(), (ids,), str(onnx_dir / "embed_tokens.onnx"),
                          input_names=["input_ids"], output_names=["inputs_embeds"],
                          dynamic_axes={"input_ids": {0: "batch_size", 1: "sequence_length"},
                                        "inputs_embeds": {0: "batch_size", 1: "sequence_length"}}, **kw)
        emb = torch.randn(2, 9, tc.d_model, generator=g)
        am = torch.ones(2, 9, dtype=torch.int64)
        torch.onnx.export(Encoder(model).eval(), (emb, am), str(onnx_dir / "encoder_model.onnx"),
                          input_names=["inputs_embeds", "attention_mask"], output_names=["last_hidden_state"],
                          dynamic_axes={"inputs_embeds": {0: "batch_size", 1: "encoder_sequence_length"},
                                        "attention_mask": {0: "batch_size", 1: "encoder_sequence_length"},
                                        "last_hidden_state": {0: "batch_size", 1: "encoder_sequence_length"}},
                          **kw)
        # decoders: first step and with past, then merged
        B, E, S, P = 2, 9, 3, 4
        enc = torch.randn(B, E, tc.d_model, generator=g)
        em = torch.ones(B, E, dtype=torch.int64)
        common_in = ["encoder_attention_mask", "encoder_hidden_states", "inputs_embeds"]
        dyn = {"encoder_attention_mask": {0: "batch_size", 1: "encoder_sequence_length"},
               "encoder_hidden_states": {0: "batch_size", 1: "encoder_sequence_length"},
               "inputs_embeds": {0: "batch_size", 1: "decoder_sequence_length"},
               "logits": {0: "batch_size", 1: "decoder_sequence_length"}}
        names_out, past_in, dyn_past = ["logits"], [], dict(dyn)
        for i in range(L):
            for part in ("decoder", "encoder"):
                for kv in ("key", "value"):
                    n = f"{i}.{part}.{kv}"
                    names_out.append(f"present.{n}")
                    past_in.append(f"past_key_values.{n}")
                    axis = "past_decoder_sequence_length" if part == "decoder" else "encoder_sequence_length_out"
                    dyn_past[f"past_key_values.{n}"] = {0: "batch_size", 2: axis}
                    dyn[f"present.{n}"] = {0: "batch_size",
                                           2: "decoder_sequence_length" if part == "decoder" else "encoder_sequence_length_out"}
                    if part == "decoder":
                        dyn_past[f"present.{n}"] = {0: "batch_size", 2: "past_decoder_sequence_length + 1"}
        first = onnx_dir / "decoder_model.onnx"
        torch.onnx.export(Decoder(model, False).eval(), (em, enc, torch.randn(B, S, tc.d_model, generator=g)),
                          str(first), input_names=common_in, output_names=names_out, dynamic_axes=dyn, **kw)
        past = []
        for i in range(L):
            past += [torch.randn(B, H, P, D, generator=g) for _ in range(2)]
            past += [torch.randn(B, H, E, D, generator=g) for _ in range(2)]
        with_past = onnx_dir / "decoder_with_past_model.onnx"
        out_past = ["logits"] + [n for n in names_out[1:] if ".decoder." in n]
        torch.onnx.export(Decoder(model, True).eval(), (em, enc, torch.randn(B, 1, tc.d_model, generator=g), *past),
                          str(with_past), input_names=common_in + past_in, output_names=out_past,
                          dynamic_axes={k: v for k, v in dyn_past.items() if k in common_in + past_in + out_past},
                          **kw)
        merge_decoders(onnx.load(str(first)), onnx.load(str(with_past)), strict=False,
                       save_path=onnx_dir / "decoder_model_merged.onnx")
        # The split pair stays too, as the published repositories have it (`vlm.decoder = "split"`).

    so = ort.SessionOptions()
    so.log_severity_level = 3
    sess = {n: ort.InferenceSession(str(onnx_dir / f"{n}.onnx"), so, providers=["CPUExecutionProvider"])
            for n in ("vision_encoder", "embed_tokens", "encoder_model", "decoder_model_merged")}
    diffs = {}
    with torch.no_grad():
        pv = torch.randn(3, 3, SIZE, SIZE, generator=g)
        got = sess["vision_encoder"].run(None, {"pixel_values": pv.numpy()})[0]
        diffs["vision_encoder"] = float(np.abs(got - model.model.get_image_features(pv).numpy()).max())
        ids = torch.randint(0, tc.vocab_size, (3, 7), generator=g)
        got = sess["embed_tokens"].run(None, {"input_ids": ids.numpy()})[0]
        diffs["embed_tokens"] = float(np.abs(got - model.get_input_embeddings()(ids).numpy()).max())
        emb = torch.randn(3, 11, tc.d_model, generator=g)
        am = torch.ones(3, 11, dtype=torch.int64)
        got = sess["encoder_model"].run(None, {"inputs_embeds": emb.numpy(), "attention_mask": am.numpy()})[0]
        diffs["encoder_model"] = float(np.abs(got - Encoder(model)(emb, am).numpy()).max())
    for k, v in diffs.items():
        log(f"  onnx vs torch {k}: max |diff| = {v:.2e}")
    return diffs


class OrtGreedy:
    """A plain numpy + onnxruntime greedy loop over the four graphs, the steps docfleet takes, with the
    generation config's processors that matter here (forced BOS / EOS, no-repeat 3-grams)."""

    def __init__(self, onnx_dir: Path, suffix: str = ""):
        import onnxruntime as ort

        so = ort.SessionOptions()
        so.log_severity_level = 3
        self.s = {n: ort.InferenceSession(str(onnx_dir / f"{n}{suffix}.onnx"), so, providers=["CPUExecutionProvider"])
                  for n in ("vision_encoder", "embed_tokens", "encoder_model", "decoder_model_merged")}
        dec = self.s["decoder_model_merged"]
        self.past = [(i.name, i.shape) for i in dec.get_inputs() if i.name.startswith("past_key_values.")]
        self.outs = [o.name for o in dec.get_outputs()]
        f16 = self.s["vision_encoder"].get_inputs()[0].type == "tensor(float16)"
        self.float = np.float16 if f16 else np.float32

    @staticmethod
    def banned_ngrams(seq, n=3):
        if len(seq) + 1 < n:
            return set()
        key = tuple(seq[len(seq) + 1 - n:])
        return {seq[i + n - 1] for i in range(len(seq) - n + 1) if tuple(seq[i:i + n - 1]) == key}

    def generate(self, pixel_values, input_ids):
        B = pixel_values.shape[0]
        feats = self.s["vision_encoder"].run(None, {"pixel_values": pixel_values.astype(self.float)})[0]
        text = self.s["embed_tokens"].run(None, {"input_ids": input_ids})[0]
        embeds = np.concatenate([feats, text], 1)
        mask = np.ones(embeds.shape[:2], np.int64)
        hidden = self.s["encoder_model"].run(None, {"inputs_embeds": embeds, "attention_mask": mask})[0]
        seqs = [[EOS_ID] for _ in range(B)]
        done = [False] * B
        cache = None
        for step in range(MAX_NEW_TOKENS):
            last = np.array([[s[-1]] for s in seqs], np.int64)
            feeds = {"encoder_attention_mask": mask, "encoder_hidden_states": hidden,
                     "inputs_embeds": self.s["embed_tokens"].run(None, {"input_ids": last})[0],
                     "use_cache_branch": np.array([cache is not None])}
            for name, shape in self.past:
                feeds[name] = cache[name] if cache else np.zeros((B, shape[1], 0, shape[3]), self.float)
            res = dict(zip(self.outs, self.s["decoder_model_merged"].run(None, feeds)))
            new = {}
            for name, _ in self.past:
                pres = "present." + name[len("past_key_values."):]
                new[name] = cache[name] if (cache and ".encoder." in name) else res[pres]
            cache = new
            for b in range(B):
                if done[b]:
                    seqs[b].append(PAD_ID)
                    continue
                sc = res["logits"][b, -1].copy()
                for t in self.banned_ngrams(seqs[b]):
                    sc[t] = -np.inf
                if len(seqs[b]) == 1:
                    sc[:] = -np.inf
                    sc[BOS_ID] = 0
                if len(seqs[b]) + 1 == 1 + MAX_NEW_TOKENS:
                    sc[:] = -np.inf
                    sc[EOS_ID] = 0
                t = int(sc.argmax())
                seqs[b].append(t)
                done[b] = t == EOS_ID
            if all(done):
                break
        return seqs


# ----------------------------------------------------------------------------------------------
# References
# ----------------------------------------------------------------------------------------------
def cut_at_eos(ids):
    for k, t in enumerate(ids):
        if t == EOS_ID:
            return ids[: k + 1], "eos"
    return ids, "length"


def tensor_sha(a) -> str:
    return hashlib.sha256(np.ascontiguousarray(a, dtype="<f4").tobytes()).hexdigest()


GEN_CASES = [  # (task, pages)
    ("<OCR>", ["a4_150dpi"]), ("<OCR>", ["landscape"]), ("<OCR>", ["tiny"]), ("<OCR>", ["strip_wide"]),
    ("<OCR>", ["a4_150dpi", "strip_wide", "tiny"]),
    ("<OCR_WITH_REGION>", ["landscape"]), ("<OCR_WITH_REGION>", ["a4_150dpi"]),
    ("<OCR_WITH_REGION>", ["landscape", "a4_150dpi"]),
    ("<OD>", ["strip_wide"]), ("<OD>", ["tiny", "strip_wide"]),
]


def generation_references(model, proc, pages, ortg: OrtGreedy) -> list:
    refs = []
    for task, names in GEN_CASES:
        ims = [pages[n] for n in names]
        enc = proc(text=[task] * len(ims), images=ims, return_tensors="pt")
        with torch.no_grad():
            out = model.generate(**enc, max_new_tokens=MAX_NEW_TOKENS, num_beams=1, do_sample=False)
        seqs = out.tolist()
        n_img = proc.num_image_tokens
        text_ids = enc["input_ids"][:, n_img:].numpy()
        ort_seqs = ortg.generate(enc["pixel_values"].numpy(), text_ids)
        assert [s[:len(seqs[0])] for s in ort_seqs] == seqs, (task, names, ort_seqs, seqs)
        rows = []
        for name, im, seq in zip(names, ims, seqs):
            gen, reason = cut_at_eos(seq[1:])  # seq[0] is decoder_start_token_id
            raw = proc.batch_decode([[EOS_ID] + gen], skip_special_tokens=False)[0]
            parsed = proc.post_process_generation(raw, task=task, image_size=(im.width, im.height))
            rows.append({"page": name, "generated_ids": gen, "finish_reason": reason,
                         "text": proc.batch_decode([gen], skip_special_tokens=True)[0], "raw_text": raw,
                         "parsed": parsed[task]})
        refs.append({"task": task, "pages": names, "prompt": proc._construct_prompts([task])[0],
                     "encoder_input_ids": text_ids[0].tolist(), "rows": rows})
        log(f"  {task} {names}: {[r['finish_reason'] + ':' + str(len(r['generated_ids'])) for r in rows]}")
    return refs


def post_process_references(proc) -> list:
    """Hand-built generations through `post_process_generation`: region parsing the random model's output
    would rarely reach (several instances, a page's far corner, junk between regions, empty phrases)."""
    tok = proc.tokenizer
    rng = random.Random(99)

    def loc(*bins):
        return [tok.convert_tokens_to_ids(f"<loc_{b}>") for b in bins]

    def words(s):
        return tok(s, add_special_tokens=False)["input_ids"]

    cases = [
        ("<OCR_WITH_REGION>", (300, 200), words("Total") + loc(10, 20, 400, 20, 400, 90, 10, 90) + words(" invoice 12")
         + loc(0, 0, 999, 0, 999, 999, 0, 999) + words("tail without box")),
        ("<OCR_WITH_REGION>", (1240, 1754), words("a") + loc(1, 2, 3) + words("page") + loc(*[rng.randrange(1000) for _ in range(8)])),
        ("<OD>", (420, 50), words("car") + loc(5, 6, 700, 800) + words("person") + loc(100, 100, 200, 999, 300, 300, 400, 400)
         + words("dog") + loc(1, 2, 3)),
        ("<OD>", (20, 30), loc(1, 2, 3, 4) + words("  order ") + loc(999, 999, 999, 999)),
        ("<DENSE_REGION_CAPTION>", (640, 480), words("a red figure") + loc(12, 34, 560, 780)),
        ("<REGION_PROPOSAL>", (300, 200), loc(1, 2, 3, 4, 5, 6, 7, 8) + words("x") + loc(9, 10, 11, 12)),
        ("<OCR>", (300, 200), words("Total: $12.50") + loc(1, 2)),
        ("<CAPTION>", (300, 200), words("A page with a table.")),
    ]
    refs = []
    for task, size, ids in cases:
        seq = [EOS_ID, BOS_ID] + ids + [EOS_ID]
        raw = proc.batch_decode([seq], skip_special_tokens=False)[0]
        parsed = proc.post_process_generation(raw, task=task, image_size=size)
        refs.append({"task": task, "image_size": list(size), "sequence": seq, "raw_text": raw, "parsed": parsed[task]})
    return refs


def fp16_variants(onnx_dir: Path) -> dict:
    """`onnx/*_fp16.onnx` as the onnx-community exports ship them: float16 initializers, inputs, outputs and
    cache (onnxconverter-common, `keep_io_types=False`); the graphs' own `Cast(to=FLOAT)` nodes are retargeted
    to float16, as transformers.js' conversion script does (the same step as make_idefics3.py)."""
    import onnx
    from onnx import TensorProto
    from onnxconverter_common import float16

    fixed = {}
    for g in ("vision_encoder", "embed_tokens", "encoder_model", "decoder_model_merged"):
        m = float16.convert_float_to_float16(onnx.load(str(onnx_dir / f"{g}.onnx")), keep_io_types=False)
        n = 0
        graphs = [m.graph]
        while graphs:
            graph = graphs.pop()
            for node in graph.node:
                for a in node.attribute:
                    if a.type == onnx.AttributeProto.GRAPH:
                        graphs.append(a.g)
                if node.op_type == "Cast" and "_input_cast" not in node.name and "_output_cast" not in node.name:
                    for a in node.attribute:
                        if a.name == "to" and a.i == TensorProto.FLOAT:
                            a.i = TensorProto.FLOAT16
                            n += 1
        onnx.save(m, str(onnx_dir / f"{g}_fp16.onnx"))
        fixed[g] = n
    return fixed


FP16_CASES = [("<OCR>", ["landscape"]), ("<OCR>", ["a4_150dpi", "strip_wide", "tiny"]),
              ("<OCR_WITH_REGION>", ["landscape"])]


def fp16_references(proc, pages, onnx_dir: Path) -> list:
    """Greedy ids of the fp16 graphs from the numpy + onnxruntime loop (float16 end to end on CPU: they differ
    from the float32 model's, so the fp16 graphs are their own reference)."""
    loop = OrtGreedy(onnx_dir, suffix="_fp16")
    refs = []
    for task, names in FP16_CASES:
        ims = [pages[n] for n in names]
        enc = proc(text=[task] * len(ims), images=ims, return_tensors="np")
        seqs = loop.generate(enc["pixel_values"], enc["input_ids"][:, proc.num_image_tokens:])
        rows = []
        for name, seq in zip(names, seqs):
            gen, reason = cut_at_eos(seq[1:])
            rows.append({"page": name, "generated_ids": gen, "finish_reason": reason})
        refs.append({"task": task, "pages": names, "rows": rows})
    return refs


def write_model_dir(model, proc, out: Path):
    from transformers import GenerationConfig

    model.config.save_pretrained(out)
    GenerationConfig(**generation_config_dict()).save_pretrained(out)
    proc.tokenizer.save_pretrained(out)
    for extra in ("vocab.json", "merges.txt", "added_tokens.json"):
        (out / extra).unlink(missing_ok=True)
    # preprocessor_config.json as the onnx-community exports have it: the image processor plus the
    # processor's task tables (transformers.js reads them from here).
    ip = json.loads(proc.image_processor.to_json_string())
    ip.update({"processor_class": "Florence2Processor", "image_seq_length": proc.num_image_tokens,
               "task_prompts_without_inputs": TASK_PROMPTS_WITHOUT_INPUTS,
               "task_prompts_with_input": TASK_PROMPTS_WITH_INPUT,
               "tasks_answer_post_processing_type": TASKS_ANSWER_POST_PROCESSING_TYPE})
    (out / "preprocessor_config.json").write_text(json.dumps(ip, indent=2, sort_keys=True) + "\n")
    (out / "processor_config.json").write_text(json.dumps(
        {"processor_class": "Florence2Processor", "num_additional_image_tokens": 0,
         "post_processor_config": POST_PROCESSOR_CONFIG}, indent=2, sort_keys=True) + "\n")


def main():
    torch.set_num_threads(2)
    proc = make_processor()
    pages = make_pages()
    model = build_model(proc)
    if OUT.exists():
        for p in OUT.iterdir():
            if p.name != "README.md":
                shutil.rmtree(p) if p.is_dir() else p.unlink()
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "images").mkdir()
    images = {}
    for n, im in pages.items():
        im.save(OUT / "images" / f"{n}.png", optimize=False, compress_level=9)
        images[n] = {"file": f"images/{n}.png", "wh": list(im.size)}
    write_model_dir(model, proc, OUT)
    diffs = export_onnx(model, OUT)
    for k, v in diffs.items():
        assert v < 1e-4, (k, v)
    ortg = OrtGreedy(OUT / "onnx")
    fp16_casts = fp16_variants(OUT / "onnx")

    preprocess = {}
    for n, im in pages.items():
        pv = proc.image_processor(images=[im], return_tensors="np")["pixel_values"].astype(np.float32)
        preprocess[n] = {"shape": list(pv.shape), "sha256": tensor_sha(pv)}
        if n == "landscape":
            save_npy(OUT / "preprocess" / f"{n}_pixel_values.npy", pv)
            preprocess[n]["pixel_values"] = f"preprocess/{n}_pixel_values.npy"

    import onnx
    import onnxruntime
    import optimum.onnx
    import PIL
    import tokenizers as tk
    import transformers

    ref = {
        "generator": "scripts/vlm/make_florence2.py",
        "family": "florence2",
        "versions": {"python": sys.version.split()[0], "torch": torch.__version__,
                     "transformers": transformers.__version__, "tokenizers": tk.__version__,
                     "onnx": onnx.__version__, "onnxruntime": onnxruntime.__version__, "pillow": PIL.__version__,
                     "numpy": np.__version__, "optimum-onnx": getattr(optimum.onnx, "__version__", "0.1.0")},
        "model": {"seed": MODEL_SEED, "init_std": INIT_STD, "eos_bias": EOS_BIAS, "loc_bias": LOC_BIAS,
                  "parameters": sum(p.numel() for p in model.parameters()), "size": SIZE,
                  "image_tokens": proc.num_image_tokens, "vision": VISION, "text": TEXT,
                  "vocab_size": len(proc.tokenizer)},
        "tokens": {"bos": BOS_ID, "pad": PAD_ID, "eos": EOS_ID, "image": proc.image_token_id,
                   "loc_0": proc.tokenizer.convert_tokens_to_ids("<loc_0>")},
        "max_new_tokens": MAX_NEW_TOKENS,
        "task_prompts": {t: proc._construct_prompts([t])[0] for t in TASK_PROMPTS_WITHOUT_INPUTS},
        "onnx_vs_torch_max_abs_diff": diffs,
        "onnx_signatures": onnx_signatures(OUT / "onnx"),
        "images": images,
        "preprocess": preprocess,
        "generate": generation_references(model, proc, pages, ortg),
        "post_process": post_process_references(proc),
        "fp16": {"casts_retargeted": fp16_casts, "generate": fp16_references(proc, pages, OUT / "onnx")},
    }
    files = {}
    for p in sorted(OUT.rglob("*")):
        if p.is_file() and p.name not in ("reference.json", "README.md"):
            files[str(p.relative_to(OUT))] = {"bytes": p.stat().st_size, "sha256": sha256_file(p)}
    ref["files"] = files
    (OUT / "reference.json").write_text(json.dumps(ref, indent=1, ensure_ascii=False) + "\n")
    log(f"wrote {OUT} ({sum(f['bytes'] for f in files.values()) / 1e6:.2f} MB + reference.json)")


if __name__ == "__main__":
    main()

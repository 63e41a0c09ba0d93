#!/usr/bin/env python3
"""Build a realistic-size, randomly initialised vision-encoder-decoder export for benchmarking the
`vlm` pipeline (docfleet-bench vlm --model DIR). Nothing is downloaded: the architecture is
TrOCR-small's (a 12-layer ViT encoder at 384x384 with patch 16 -> 577 positions, hidden 384, and a
6-layer TrOCR decoder, d_model 256, 8 heads, FFN 1024, 64 044-token vocabulary), the weights are
random, so the text is gibberish but every matrix has its real size.

The tokenizer is the tiny fixture tokenizer padded with placeholder tokens up to the model's
vocabulary, so every generated id decodes. EOS is made unlikely, so pages run to max_new_tokens
(fixed work per image). The export (optimum, `image-to-text-with-past`) keeps both decoder layouts.

Usage:
    ~/.cache/docfleet/vlm-venv/bin/python scripts/vlm/make_bench_model.py [--out DIR]

Default output: ~/.cache/docfleet/vlm-bench/trocr-small-random (about 250 MB; not committed).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import torch  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
TINY = REPO / "tests" / "fixtures" / "vlm" / "tiny-ved" / "merged"
VOCAB = 64044
MAX_NEW_TOKENS = 32


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=Path.home() / ".cache/docfleet/vlm-bench/trocr-small-random")
    args = ap.parse_args()

    from optimum.exporters.onnx import main_export
    from tokenizers import AddedToken, Tokenizer
    from transformers import (
        GenerationConfig,
        PreTrainedTokenizerFast,
        TrOCRConfig,
        ViTConfig,
        ViTImageProcessor,
        VisionEncoderDecoderConfig,
        VisionEncoderDecoderModel,
    )

    torch.manual_seed(0)
    enc = ViTConfig(image_size=384, patch_size=16, hidden_size=384, num_hidden_layers=12, num_attention_heads=6,
                    intermediate_size=1536, qkv_bias=True)
    dec = TrOCRConfig(vocab_size=VOCAB, d_model=256, decoder_layers=6, decoder_attention_heads=8, decoder_ffn_dim=1024,
                      max_position_embeddings=512, cross_attention_hidden_size=384, activation_function="relu",
                      layernorm_embedding=True, use_learned_position_embeddings=True, scale_embedding=False,
                      pad_token_id=1, bos_token_id=0, eos_token_id=2, decoder_start_token_id=2)
    cfg = VisionEncoderDecoderConfig.from_encoder_decoder_configs(enc, dec)
    cfg.decoder_start_token_id, cfg.pad_token_id, cfg.eos_token_id = 2, 1, 2
    model = VisionEncoderDecoderModel(config=cfg).eval()
    with torch.no_grad():
        # EOS's logit is then always 0, far below the best of 64k random logits: every page generates
        # MAX_NEW_TOKENS tokens.
        model.decoder.output_projection.weight[2] = 0.0
    model.generation_config = GenerationConfig(decoder_start_token_id=2, bos_token_id=0, eos_token_id=2, pad_token_id=1,
                                               max_new_tokens=MAX_NEW_TOKENS, no_repeat_ngram_size=3)
    print(f"parameters: {sum(p.numel() for p in model.parameters()) / 1e6:.1f} M")

    tok = Tokenizer.from_file(str(TINY / "tokenizer.json"))
    extra = VOCAB - tok.get_vocab_size()
    tok.add_tokens([AddedToken(f" w{i}", normalized=False) for i in range(extra)])
    assert tok.get_vocab_size() == VOCAB, tok.get_vocab_size()
    hf_tok = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", unk_token="<unk>",
                                     pad_token="<pad>", model_max_length=512)
    proc = ViTImageProcessor(size={"height": 384, "width": 384}, resample=2, image_mean=[0.5] * 3, image_std=[0.5] * 3)

    work = args.out.parent / (args.out.name + "-hf")
    for d in (work, args.out):
        if d.exists():
            shutil.rmtree(d)
    model.save_pretrained(work)
    hf_tok.save_pretrained(work)
    proc.save_pretrained(work)
    main_export(model_name_or_path=str(work), output=str(args.out), task="image-to-text-with-past",
                library_name="transformers", device="cpu", do_validation=False)
    for f in ("preprocessor_config.json", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        if not (args.out / f).exists():
            shutil.copyfile(work / f, args.out / f)
    shutil.rmtree(work)
    files = sorted(p.name for p in args.out.iterdir())
    size = sum(p.stat().st_size for p in args.out.iterdir()) / 1e6
    print(json.dumps({"out": str(args.out), "files": files, "mb": round(size, 1)}))


if __name__ == "__main__":
    main()

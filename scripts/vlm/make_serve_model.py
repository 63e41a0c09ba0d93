#!/usr/bin/env python3
"""Build the tiny random Qwen2-VL that the `openai` engine's tests serve with `transformers serve`.

Everything is local and deterministic (no Hugging Face hub access): a byte-level BPE tokenizer trained on a
generated corpus, carrying Qwen2-VL's special tokens and chat template; a `Qwen2VLImageProcessor` limited to
small images (few image tokens, fast on CPU); a seeded, randomly initialised `Qwen2VLForConditionalGeneration`
of a few hundred thousand parameters. The result is a model directory `transformers serve DIR` loads.

Usage (the committed fixture; versions in scripts/setup/serve-requirements.txt):

    $(scripts/setup/serve.sh) scripts/vlm/make_serve_model.py [OUT_DIR]   # default tests/fixtures/vlm/serve

Then it checks the directory loads and generates with `AutoModelForImageTextToText` + `AutoProcessor` as
`transformers serve` does.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch  # noqa: E402
import transformers  # noqa: E402
from PIL import Image  # noqa: E402
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers  # noqa: E402
from transformers import (  # noqa: E402
    AutoModelForImageTextToText,
    AutoProcessor,
    PreTrainedTokenizerFast,
    Qwen2VLConfig,
    Qwen2VLForConditionalGeneration,
    Qwen2VLImageProcessor,
    Qwen2VLProcessor,
    Qwen2VLVideoProcessor,
)

REPO = Path(__file__).resolve().parents[2]
OUT = REPO / "tests" / "fixtures" / "vlm" / "serve"
PINNED = {"torch": "2.9.1", "transformers": "5.23.0"}

SEED = 1717
VOCAB_SIZE = 512
SPECIALS = [
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|image_pad|>",
    "<|video_pad|>",
]
# Qwen2-VL's chat template (images as <|vision_start|><|image_pad|><|vision_end|>), trimmed of tools.
CHAT_TEMPLATE = (
    "{% set image_count = namespace(value=0) %}"
    "{% for message in messages %}"
    "{% if loop.first and message['role'] != 'system' %}<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}"
    "<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}<|im_end|>\n"
    "{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'image' or 'image' in content or 'image_url' in content %}"
    "{% set image_count.value = image_count.value + 1 %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif 'text' in content %}{{ content['text'] }}{% endif %}"
    "{% endfor %}<|im_end|>\n{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def corpus() -> list[str]:
    rng = random.Random(SEED)
    words = (
        "page document table figure title section text markdown convert this the of and to in is "
        "primary language rotation valid diagram front matter header footer caption list item"
    ).split()
    lines = []
    for _ in range(400):
        lines.append(" ".join(rng.choice(words) for _ in range(rng.randint(3, 12))) + rng.choice([".", ",", ":", "!", "?", "\n", "#", "|", "-"]))
    return lines


def build_tokenizer(out: Path) -> PreTrainedTokenizerFast:
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB_SIZE,
        special_tokens=SPECIALS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(corpus(), trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        extra_special_tokens={"image_token": "<|image_pad|>", "video_token": "<|video_pad|>",
                              "vision_bos_token": "<|vision_start|>", "vision_eos_token": "<|vision_end|>"},
    )
    fast.chat_template = CHAT_TEMPLATE
    return fast


def main() -> None:
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else OUT
    for name, want in PINNED.items():
        have = getattr(sys.modules[name], "__version__", "?").split("+")[0]
        if have != want:
            sys.exit(f"{name} {have} found, {want} pinned (scripts/setup/serve-requirements.txt)")
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    tokenizer = build_tokenizer(out)
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in SPECIALS}
    # Small images: at most 4x4 merged patches (16 image tokens) per page.
    image_processor = Qwen2VLImageProcessor(
        min_pixels=28 * 28 * 4,
        max_pixels=28 * 28 * 16,
        patch_size=14,
        temporal_patch_size=2,
        merge_size=2,
    )
    video_processor = Qwen2VLVideoProcessor(
        min_pixels=28 * 28 * 4, max_pixels=28 * 28 * 16, patch_size=14, temporal_patch_size=2, merge_size=2
    )
    processor = Qwen2VLProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        video_processor=video_processor,
        chat_template=CHAT_TEMPLATE,
    )
    vocab = len(tokenizer)
    config = Qwen2VLConfig(
        text_config={
            "vocab_size": vocab,
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "num_key_value_heads": 1,
            "max_position_embeddings": 4096,
            "rope_parameters": {"rope_type": "default", "rope_theta": 10000.0, "mrope_section": [4, 2, 2]},
            "tie_word_embeddings": True,
            "eos_token_id": ids["<|im_end|>"],
            "pad_token_id": ids["<|endoftext|>"],
            "bos_token_id": None,
        },
        vision_config={
            "depth": 1,
            "embed_dim": 32,
            "hidden_size": 32,
            "num_heads": 2,
            "mlp_ratio": 2,
            "patch_size": 14,
            "spatial_merge_size": 2,
            "temporal_patch_size": 2,
        },
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
        tie_word_embeddings=True,
    )
    torch.manual_seed(SEED)
    model = Qwen2VLForConditionalGeneration(config).eval()
    # Larger random weights than the default init, so greedy answers are varied rather than one
    # token repeated.
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() >= 2:
                p.normal_(0.0, 0.3)
    model.generation_config.do_sample = False
    model.generation_config.eos_token_id = ids["<|im_end|>"]
    model.generation_config.pad_token_id = ids["<|endoftext|>"]
    model.generation_config.max_new_tokens = 32
    model.save_pretrained(out, safe_serialization=True)
    processor.save_pretrained(out)
    (out / "docfleet-fixture.json").write_text(
        json.dumps(
            {
                "made_by": "scripts/vlm/make_serve_model.py",
                "seed": SEED,
                "versions": {"torch": torch.__version__, "transformers": transformers.__version__},
                "parameters": sum(p.numel() for p in model.parameters()),
                "special_token_ids": ids,
            },
            indent=2,
        )
        + "\n"
    )
    check(out)


def check(out: Path) -> None:
    """Load as `transformers serve` does and generate greedily for one image."""
    processor = AutoProcessor.from_pretrained(out)
    model = AutoModelForImageTextToText.from_pretrained(out).eval()
    img = Image.new("RGB", (120, 90), (230, 230, 230))
    for x in range(10, 110):
        img.putpixel((x, 45), (0, 0, 0))
    messages = [{"role": "user", "content": [{"type": "text", "text": "Convert this page to Markdown."}, {"type": "image", "image": img}]}]
    inputs = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=True, return_dict=True, return_tensors="pt")
    with torch.no_grad():
        gen = model.generate(**inputs, max_new_tokens=16, do_sample=False)
    text = processor.decode(gen[0, inputs["input_ids"].shape[1]:], skip_special_tokens=True)
    print(f"{out}: {sum(p.numel() for p in model.parameters())} parameters; greedy answer: {text!r}")


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""The Python side of the Qwen2-VL generation benchmark (`docfleet-bench qwen2vl`), and the bench model.

    bench_qwen2vl.py make OUTDIR     # the random bench model, its three ONNX graphs, torch checkpoint, pages
    bench_qwen2vl.py run OUTDIR [--threads 2] [--rows 1:200704,4:200704] [--new-tokens 32]
                                [--engines onnxruntime,transformers] [--spinning]

`make` builds a random `Qwen2VLForConditionalGeneration` with Qwen2-VL-2B's vision widths (embed 1280,
16 heads, MLP ×4, patch 14, temporal 2, merge 2) but 4 of its 32 blocks, and a text model at
Qwen2-0.5B's sizes (hidden 896, 24 layers, 14 heads / 2 KV heads, head_dim 64, M-RoPE sections [8, 12, 12]:
the published [16, 24, 24] scaled to head_dim 64), transformers' default initialisation, and exports it with make_qwen2vl.py's wrappers
(the onnx-community graph names and shapes), checked against torch. Its vocabulary is make_qwen2vl's
512-token tokenizer. Not committed: ~1.8 GB of fp32 graphs.

`run` generates, for each row `BATCH:MAX_PIXELS` (pages OUTDIR/pages/*.png cycled to fill the batch,
`Qwen2VLImageProcessor` with that max_pixels, so image tokens per page = what `vlm.max_pixels` gives the
Rust side), exactly --new-tokens tokens per page with

  (a) a plain numpy + onnxruntime greedy loop over the three graphs — the steps docfleet runs: the vision
      encoder page by page, the embeddings with the image features scattered into the <|image_pad|>
      slots, `get_rope_index` positions (make_qwen2vl.rope_index), the merged decoder with its cache;
  (b) `transformers`' `generate` on the torch checkpoint (min_new_tokens = max_new_tokens).

Preprocessing is outside the timings. Prints one JSON line per (engine, row).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import make_qwen2vl as mq  # noqa: E402  (re-executes with PYTHONHASHSEED=0, sets the offline switches)
import numpy as np  # noqa: E402
import torch  # noqa: E402
from bench_idefics3_python import TimedLoop, bench_transformers  # noqa: E402
from PIL import Image  # noqa: E402

PROMPT = mq.TASK_PROMPT
TOKEN_PIXELS = mq.FACTOR * mq.FACTOR  # 784 pixels per image token
DEFAULT_MAX_PIXELS = 256 * TOKEN_PIXELS  # the rows' default: at most 256 image tokens per page
# The saved processor's max_pixels: the model's own limit, which `vlm.max_pixels` only lowers, so
# every row up to 1024 image tokens per page means the same on both sides.
MODEL_MAX_PIXELS = 1024 * TOKEN_PIXELS

BENCH_TEXT = dict(hidden_size=896, intermediate_size=4864, num_hidden_layers=24, num_attention_heads=14,
                  num_key_value_heads=2, max_position_embeddings=32768, rope_theta=1000000.0, rms_norm_eps=1e-6)
BENCH_VISION = dict(depth=4, embed_dim=1280, hidden_size=BENCH_TEXT["hidden_size"], num_heads=16, mlp_ratio=4.0,
                    hidden_act="quick_gelu")
BENCH_PAGES = {"a4_portrait": (1240, 1754), "letter_landscape": (1650, 1275), "receipt": (600, 1400),
               "half_page": (1240, 877)}


def bench_sizes():
    mq.TEXT = BENCH_TEXT
    mq.VISION_QWEN2 = BENCH_VISION
    mq.MROPE_SECTION = [8, 12, 12]  # half of head_dim 64, in the published [16, 24, 24] : 128 proportions


def processor(max_pixels: int):
    bench_sizes()
    proc = mq.make_processor()
    proc.image_processor = mq.make_image_processor(max_pixels=max_pixels)
    proc.tokenizer.padding_side = "left"
    return proc


def make(out: Path):
    from transformers import Qwen2VLForConditionalGeneration

    torch.set_num_threads(2)
    proc = processor(MODEL_MAX_PIXELS)
    torch.manual_seed(0)
    cfg = mq.model_config("qwen2vl")
    cfg._attn_implementation = "eager"
    model = Qwen2VLForConditionalGeneration(cfg).eval()
    model.generation_config.update(**mq.generation_config_dict())
    out.mkdir(parents=True, exist_ok=True)
    mq.write_model_dir(model, proc, out)
    model.save_pretrained(out / "torch")
    (out / "pages").mkdir(exist_ok=True)
    rng = np.random.default_rng(mq.IMAGE_SEED + 5)
    for name, (w, h) in BENCH_PAGES.items():
        mq._page(w, h, rng).save(out / "pages" / f"{name}.png", compress_level=9)
    mq.log("exporting (a few minutes on 2 cores) …")
    diffs = mq.export_onnx(model, "qwen2vl", proc, mq.make_pages(), out)
    (out / "bench_model.json").write_text(json.dumps({
        "generator": "scripts/vlm/bench_qwen2vl.py make", "parameters": sum(p.numel() for p in model.parameters()),
        "text": BENCH_TEXT, "vision": BENCH_VISION, "onnx_vs_torch_max_abs_diff": diffs,
        "onnx_signatures": mq.onnx_signatures(out / "onnx"), "pages": BENCH_PAGES}, indent=1) + "\n")
    mq.log(f"wrote {out}")


def inputs(proc, model_dir: Path, batch: int):
    pages = [Image.open(p).convert("RGB") for p in sorted((model_dir / "pages").glob("*.png"))]
    if not pages:
        sys.exit(f"no pages in {model_dir / 'pages'}: run bench_qwen2vl.py make {model_dir}")
    chosen = [pages[i % len(pages)] for i in range(batch)]
    text = proc.apply_chat_template(mq.messages(PROMPT), add_generation_prompt=True)
    return proc(text=[text] * batch, images=chosen, return_tensors="pt", padding=True)


class OrtLoop(TimedLoop):
    def __init__(self, model_dir: Path, threads: int, spinning: bool):
        super().__init__(model_dir, threads, spinning)
        self.grid_name = next(i.name for i in self.vision.get_inputs() if i.name != "pixel_values")

    def generate(self, enc, new_tokens: int):
        self.inside = 0.0
        t0 = time.perf_counter()
        ids = enc["input_ids"].numpy()
        mask = enc["attention_mask"].numpy().astype(np.int64)
        grids = enc["image_grid_thw"].numpy()
        pixels = enc["pixel_values"].numpy()
        B = ids.shape[0]
        feats, start = [], 0
        for g in grids:  # page by page, as docfleet runs the vision encoder
            n = int(np.prod(g))
            feats.append(self._run(self.vision, {"pixel_values": pixels[start:start + n],
                                                 self.grid_name: g[None, :].astype(np.int64)})[0])
            start += n
        emb = self._run(self.embed, {"input_ids": ids})[0]
        emb[ids == mq.IMAGE_ID] = np.concatenate(feats, 0)
        pos, deltas = mq.rope_index(ids, grids, mask)
        t_vision = time.perf_counter()
        ids_out, t_prefill = self.decode(
            emb, mask, pos, new_tokens,
            lambda m, cache_len: np.broadcast_to((cache_len + deltas)[None, :, None], (3, B, 1)).copy())
        t_end = time.perf_counter()
        return ids_out, {"vision_s": t_vision - t0, "prefill_s": t_prefill - t_vision,
                                           "decode_s": t_end - t_prefill, "wall_s": t_end - t0,
                                           "inside_run_s": self.inside}


def run(args):
    model_dir = Path(args.model_dir).expanduser()
    torch.set_num_threads(args.threads)
    engines = args.engines.split(",")
    loop = OrtLoop(model_dir, args.threads, args.spinning) if "onnxruntime" in engines else None
    model = None
    if "transformers" in engines:
        from transformers import Qwen2VLForConditionalGeneration

        model = Qwen2VLForConditionalGeneration.from_pretrained(model_dir / "torch", dtype=torch.float32).eval()
    N = args.new_tokens
    for row in args.rows.split(","):
        batch, max_pixels = (int(x) for x in row.split(":"))
        enc = inputs(processor(max_pixels), model_dir, batch)
        grids = enc["image_grid_thw"].numpy()
        common = {"batch": batch, "max_pixels": max_pixels, "new_tokens": N,
                  "prompt_len": int(enc["input_ids"].shape[1]),
                  "image_tokens": [int(np.prod(g)) // (mq.MERGE * mq.MERGE) for g in grids], "threads": args.threads}
        for engine in engines:
            if engine == "onnxruntime":
                loop.generate(enc, 2)  # warm-up
                ids, t = loop.generate(enc, N)
            elif engine == "transformers":
                bench_transformers(model, enc, 2)
                ids, t = bench_transformers(model, enc, N)
            else:
                sys.exit(f"unknown engine {engine}")
            line = dict(common, engine=engine, tokens=batch * N, **{k: round(v, 4) for k, v in t.items()},
                        tokens_per_s=round(batch * N / t["wall_s"], 2), ids_first_row=ids[0], ids=ids)
            if "inside_run_s" in t:
                line["outside_run_fraction"] = round(1 - t["inside_run_s"] / t["wall_s"], 4)
            print(json.dumps(line), flush=True)


def main():
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    m = sub.add_parser("make")
    m.add_argument("model_dir")
    r = sub.add_parser("run")
    r.add_argument("model_dir")
    r.add_argument("--threads", type=int, default=2)
    r.add_argument("--rows", default=f"1:{DEFAULT_MAX_PIXELS},4:{DEFAULT_MAX_PIXELS}")
    r.add_argument("--new-tokens", type=int, default=32)
    r.add_argument("--engines", default="onnxruntime,transformers")
    r.add_argument("--spinning", action="store_true")
    args = ap.parse_args()
    if args.cmd == "make":
        make(Path(args.model_dir).expanduser())
    else:
        run(args)


if __name__ == "__main__":
    main()

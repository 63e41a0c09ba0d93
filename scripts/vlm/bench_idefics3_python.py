#!/usr/bin/env python3
"""The Python side of the Idefics3 generation benchmark: greedy generation on the SmolVLM-256M-sized random
model that `make_idefics3.py --bench OUTDIR` writes, with

  (a) `transformers`' `model.generate` (PyTorch, the checkpoint in OUTDIR/torch), and
  (b) a plain numpy + onnxruntime greedy loop over OUTDIR/onnx/{vision_encoder,embed_tokens,
      decoder_model_merged}.onnx — the same graphs and the same steps docfleet's Rust side runs.

    bench_idefics3_python.py OUTDIR [--threads 2] [--batches 1,4,8] [--new-tokens 16] [--split]
                             [--engines onnxruntime,transformers] [--repeat 1] [--spinning]

--spinning lets onnxruntime's intra-op threads spin between operators (onnxruntime's own default);
without it they do not, as docfleet's `runtime.intra_op_spinning = false` default has it — the Rust side
is told the same, so both loops run the same session options.

Every row generates exactly --new-tokens tokens (stop tokens ignored, so both engines and docfleet do the
same work on a random model). Pages are OUTDIR/pages/*.png, cycled to fill a batch; preprocessing
(Idefics3Processor) is done once per batch, outside the timings. Prints one JSON line per (engine, batch):
tokens, wall seconds of generation (vision + prefill + decode), the split of it, tokens/s overall and for
the decode steps alone, seconds inside InferenceSession.run (onnxruntime), and the first row's ids.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np  # noqa: E402
import onnxruntime as ort  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402

PROMPT = "Convert this page to docling."


def load_inputs(model_dir: Path, batch: int, split: bool):
    from transformers import AutoProcessor

    proc = AutoProcessor.from_pretrained(model_dir)
    proc.tokenizer.padding_side = "left"
    proc.image_processor.do_image_splitting = split
    pages = [Image.open(p).convert("RGB") for p in sorted((model_dir / "pages").glob("*.png"))]
    if not pages:
        sys.exit(f"no pages in {model_dir / 'pages'}: run make_idefics3.py --bench {model_dir}")
    chosen = [pages[i % len(pages)] for i in range(batch)]
    msgs = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": PROMPT}]}]
    text = proc.apply_chat_template(msgs, add_generation_prompt=True)
    return proc(text=[text] * batch, images=[[p] for p in chosen], return_tensors="pt", padding=True)


def ort_sessions(onnx_dir: Path, threads: int, spinning: bool):
    """The three graphs with the session options docfleet's runtime uses (intra-op threads, spinning as
    asked, all graph optimisations): vision_encoder, embed_tokens, decoder_model_merged."""
    so = ort.SessionOptions()
    so.add_session_config_entry("session.intra_op.allow_spinning", "1" if spinning else "0")
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.log_severity_level = 3
    mk = lambda n: ort.InferenceSession(str(onnx_dir / f"{n}.onnx"), so, providers=["CPUExecutionProvider"])  # noqa: E731
    return mk("vision_encoder"), mk("embed_tokens"), mk("decoder_model_merged")


class TimedLoop:
    """A greedy loop over the three graphs that counts the seconds spent inside InferenceSession.run."""

    def __init__(self, model_dir: Path, threads: int, spinning: bool):
        self.vision, self.embed, self.decoder = ort_sessions(model_dir / "onnx", threads, spinning)
        self.past_names = [i.name for i in self.decoder.get_inputs() if i.name.startswith("past_key_values.")]
        pk = next(i for i in self.decoder.get_inputs() if i.name.startswith("past_key_values."))
        self.kv_heads, self.head_dim = pk.shape[1], pk.shape[3]
        self.inside = 0.0

    def _run(self, sess, feeds):
        t = time.perf_counter()
        try:
            return sess.run(None, feeds)
        finally:
            self.inside += time.perf_counter() - t

    def decode(self, emb, mask, pos, new_tokens: int, next_positions):
        """Prefill and greedy steps: exactly `new_tokens` ids per row ([B, new_tokens]) and the time the
        prefill ended. `next_positions(mask, cache_len)` gives a step's position_ids."""
        B = emb.shape[0]
        past = {n: np.zeros((B, self.kv_heads, 0, self.head_dim), np.float32) for n in self.past_names}
        out, t_prefill = [], None
        for step in range(new_tokens):
            res = self._run(self.decoder, {"inputs_embeds": emb, "attention_mask": mask, "position_ids": pos, **past})
            nxt = res[0][:, -1, :].argmax(-1)
            out.append(nxt)
            if step == 0:
                t_prefill = time.perf_counter()
            if step + 1 == new_tokens:
                break
            past = {n: res[1 + k] for k, n in enumerate(self.past_names)}
            emb = self._run(self.embed, {"input_ids": nxt[:, None].astype(np.int64)})[0]
            cache_len = mask.shape[1]
            mask = np.concatenate([mask, np.ones((B, 1), np.int64)], 1)
            pos = next_positions(mask, cache_len)
        return np.stack(out, 1).tolist(), t_prefill


class OrtLoop(TimedLoop):
    def __init__(self, model_dir: Path, threads: int, image_token_id: int, spinning: bool):
        super().__init__(model_dir, threads, spinning)
        self.image_token_id = image_token_id

    def generate(self, enc, new_tokens: int):
        self.inside = 0.0
        t0 = time.perf_counter()
        ids = enc["input_ids"].numpy()
        mask = enc["attention_mask"].numpy().astype(np.int64)
        pam = enc["pixel_attention_mask"].numpy().astype(bool)
        B = ids.shape[0]
        feats = self._run(self.vision, {"pixel_values": enc["pixel_values"].numpy(), "pixel_attention_mask": pam})[0]
        real = pam.reshape(feats.shape[0], -1).any(-1)
        feats = feats[real].reshape(-1, feats.shape[-1])
        emb = self._run(self.embed, {"input_ids": ids})[0]
        emb[ids == self.image_token_id] = feats
        t_vision = time.perf_counter()
        pos = np.where(mask == 0, 1, np.cumsum(mask, -1) - 1)
        ids_out, t_prefill = self.decode(emb, mask, pos, new_tokens, lambda m, _: m.sum(-1, keepdims=True) - 1)
        t_end = time.perf_counter()
        return ids_out, {"vision_s": t_vision - t0, "prefill_s": t_prefill - t_vision, "decode_s": t_end - t_prefill,
                         "wall_s": t_end - t0, "inside_run_s": self.inside}


def bench_transformers(model, enc, new_tokens: int):
    def gen(n):
        t = time.perf_counter()
        with torch.no_grad():
            out = model.generate(**enc, max_new_tokens=n, min_new_tokens=n, do_sample=False)
        return out[:, enc["input_ids"].shape[1]:].tolist(), time.perf_counter() - t

    _, first = gen(1)  # vision + prefill + one token
    ids, wall = gen(new_tokens)
    return ids, {"vision_prefill_s": first, "decode_s": wall - first, "wall_s": wall}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model_dir")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batches", default="1,4,8")
    ap.add_argument("--new-tokens", type=int, default=16)
    ap.add_argument("--split", action="store_true", help="image splitting on (13 tiles per A4 page: slow)")
    ap.add_argument("--engines", default="onnxruntime,transformers")
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--spinning", action="store_true", help="onnxruntime intra-op threads spin (its default)")
    args = ap.parse_args()
    model_dir = Path(args.model_dir).expanduser()
    torch.set_num_threads(args.threads)
    cfg = json.loads((model_dir / "config.json").read_text())
    engines = args.engines.split(",")
    loop = OrtLoop(model_dir, args.threads, cfg["image_token_id"], args.spinning) if "onnxruntime" in engines else None
    model = None
    if "transformers" in engines:
        from transformers import Idefics3ForConditionalGeneration

        model = Idefics3ForConditionalGeneration.from_pretrained(model_dir / "torch", dtype=torch.float32).eval()
    N = args.new_tokens
    for batch in [int(b) for b in args.batches.split(",")]:
        enc = load_inputs(model_dir, batch, args.split)
        common = {"batch": batch, "new_tokens": N, "prompt_len": int(enc["input_ids"].shape[1]),
                  "images": int(enc["pixel_values"].shape[0] * enc["pixel_values"].shape[1]),
                  "split": args.split, "threads": args.threads}
        ids_by_engine = {}
        for engine in engines:
            if engine == "onnxruntime":
                loop.generate(enc, 2)  # warm-up
                runs = [loop.generate(enc, N) for _ in range(args.repeat)]
            elif engine == "transformers":
                bench_transformers(model, enc, 2)  # warm-up
                runs = [bench_transformers(model, enc, N) for _ in range(args.repeat)]
            else:
                sys.exit(f"unknown engine {engine}")
            ids = runs[0][0]
            ids_by_engine[engine] = ids
            t = {k: sum(r[1][k] for r in runs) / len(runs) for k in runs[0][1]}
            row = dict(common, engine=engine, tokens=batch * N, **{k: round(v, 4) for k, v in t.items()},
                       tokens_per_s=round(batch * N / t["wall_s"], 2),
                       decode_tokens_per_s=round(batch * (N - 1) / t["decode_s"], 2) if N > 1 else None,
                       ids_first_row=ids[0])
            if "inside_run_s" in t:
                row["outside_run_fraction"] = round(1 - t["inside_run_s"] / t["wall_s"], 4)
            print(json.dumps(row), flush=True)
        if len(ids_by_engine) == 2:
            a, b = ids_by_engine.values()
            print(json.dumps(dict(common, engines_agree=a == b)), flush=True)


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""The Python side of the Florence-2 generation benchmark (`docfleet-bench florence2`), and the bench model.

    bench_florence2.py make OUTDIR     # the random bench model, its four ONNX graphs, torch checkpoint, pages
    bench_florence2.py run OUTDIR [--threads 2] [--batches 1,4,8] [--new-tokens 32] [--task "<OCR>"]
                                  [--engines onnxruntime,transformers] [--spinning]

`make` builds a random `Florence2ForConditionalGeneration` at Florence-2-base's sizes: the DaViT vision tower
of the published base model (depths [1, 1, 9, 1], widths 128…1024, window 12, projection 768), BART-base
(d_model 768, 6 encoder and 6 decoder layers, 12 heads, FFN 3072) and the published 768 × 768
`CLIPImageProcessor` (577 image tokens per page), with transformers' default initialisation. Its vocabulary is
make_florence2's tokenizer (420 BPE tokens + Florence-2's task and 1000 `<loc_N>` tokens, 1432 in all; the
published one has 51289, which makes the LM head ~36× wider: the decoder steps of the published model cost
more than here, the vision tower and encoder the same). Exported with make_florence2.py's wrappers (the
onnx-community graph names and shapes), checked against torch. Not committed: ~1 GB of fp32 graphs.

`run` generates, for each batch size (pages OUTDIR/pages/*.png cycled to fill the batch, the task's question
from Florence2Processor), exactly --new-tokens tokens per page (the last one the forced EOS) with

  (a) a plain numpy + onnxruntime greedy loop over the four graphs — the steps docfleet runs: the vision
      encoder on the batch, the question's embeddings behind the image features, the encoder, the merged
      decoder with its cache (`use_cache_branch`) and the generation config's processors (forced BOS/EOS,
      no repeated 3-grams, EOS held back until the last token);
  (b) `transformers`' `generate` on the torch checkpoint (min_new_tokens = max_new_tokens).

Preprocessing is outside the timings. Prints one JSON line per (engine, batch).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import make_florence2 as mf  # noqa: E402  (re-executes with PYTHONHASHSEED=0, sets the offline switches)
import numpy as np  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402

SIZE = 768  # Florence-2's preprocessor_config.json
BENCH_VISION = dict(depths=[1, 1, 9, 1], embed_dim=[128, 256, 512, 1024], num_heads=[4, 8, 16, 32],
                    num_groups=[4, 8, 16, 32], window_size=12, projection_dim=768, drop_path_rate=0.0)
BENCH_TEXT = dict(d_model=768, encoder_layers=6, decoder_layers=6, encoder_attention_heads=12,
                  decoder_attention_heads=12, encoder_ffn_dim=3072, decoder_ffn_dim=3072,
                  max_position_embeddings=1024, scale_embedding=False, dropout=0.0, attention_dropout=0.0,
                  activation_dropout=0.0)
BENCH_PAGES = {"a4_portrait": (1240, 1754), "letter_landscape": (1650, 1275), "receipt": (600, 1400),
               "half_page": (1240, 877)}
GRAPHS = ("vision_encoder", "embed_tokens", "encoder_model", "decoder_model_merged")


def bench_sizes():
    mf.SIZE = SIZE
    mf.VISION = BENCH_VISION
    mf.TEXT = BENCH_TEXT


def processor():
    bench_sizes()
    return mf.make_processor()


def build_model(proc):
    from transformers import Florence2Config, Florence2ForConditionalGeneration

    torch.manual_seed(0)
    text = dict(BENCH_TEXT, model_type="bart", vocab_size=len(proc.tokenizer), bos_token_id=mf.BOS_ID,
                pad_token_id=mf.PAD_ID, eos_token_id=mf.EOS_ID, decoder_start_token_id=mf.EOS_ID,
                forced_bos_token_id=mf.BOS_ID, forced_eos_token_id=mf.EOS_ID)
    cfg = Florence2Config(text_config=text, vision_config=BENCH_VISION, image_token_id=proc.image_token_id,
                          bos_token_id=mf.BOS_ID, pad_token_id=mf.PAD_ID, eos_token_id=mf.EOS_ID,
                          decoder_start_token_id=mf.EOS_ID)
    cfg._attn_implementation = "eager"
    cfg.text_config._attn_implementation = "eager"
    model = Florence2ForConditionalGeneration(cfg).eval()
    model.generation_config.update(**mf.generation_config_dict())
    return model


def make(out: Path):
    torch.set_num_threads(2)
    proc = processor()
    model = build_model(proc)
    out.mkdir(parents=True, exist_ok=True)
    mf.write_model_dir(model, proc, out)
    model.save_pretrained(out / "torch")
    (out / "pages").mkdir(exist_ok=True)
    rng = np.random.default_rng(mf.IMAGE_SEED + 5)
    for name, (w, h) in BENCH_PAGES.items():
        mf._page(w, h, rng).save(out / "pages" / f"{name}.png", compress_level=9)
    mf.log("exporting (a few minutes on 2 cores) …")
    diffs = mf.export_onnx(model, out)
    for k, v in diffs.items():
        assert v < 1e-3, (k, v)
    (out / "bench_model.json").write_text(json.dumps({
        "generator": "scripts/vlm/bench_florence2.py make", "parameters": sum(p.numel() for p in model.parameters()),
        "text": BENCH_TEXT, "vision": BENCH_VISION, "image_size": SIZE, "image_tokens": proc.num_image_tokens,
        "vocab": len(proc.tokenizer), "onnx_vs_torch_max_abs_diff": diffs,
        "onnx_signatures": mf.onnx_signatures(out / "onnx"), "pages": BENCH_PAGES}, indent=1) + "\n")
    mf.log(f"wrote {out}")


def inputs(proc, model_dir: Path, batch: int, task: str):
    pages = [Image.open(p).convert("RGB") for p in sorted((model_dir / "pages").glob("*.png"))]
    if not pages:
        sys.exit(f"no pages in {model_dir / 'pages'}: run bench_florence2.py make {model_dir}")
    chosen = [pages[i % len(pages)] for i in range(batch)]
    return proc(text=[task] * batch, images=chosen, return_tensors="pt")


class OrtLoop:
    """The four graphs with docfleet's session options, counting the seconds inside InferenceSession.run."""

    def __init__(self, model_dir: Path, threads: int, spinning: bool, image_token_id: int):
        import onnxruntime as ort

        so = ort.SessionOptions()
        so.add_session_config_entry("session.intra_op.allow_spinning", "1" if spinning else "0")
        so.intra_op_num_threads = threads
        so.inter_op_num_threads = 1
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        so.log_severity_level = 3
        self.s = {n: ort.InferenceSession(str(model_dir / "onnx" / f"{n}.onnx"), so,
                                          providers=["CPUExecutionProvider"]) for n in GRAPHS}
        dec = self.s["decoder_model_merged"]
        self.past = [(i.name, i.shape) for i in dec.get_inputs() if i.name.startswith("past_key_values.")]
        self.outs = [o.name for o in dec.get_outputs()]
        self.image_token_id = image_token_id
        self.inside = 0.0

    def _run(self, name, feeds):
        t = time.perf_counter()
        try:
            return self.s[name].run(None, feeds)
        finally:
            self.inside += time.perf_counter() - t

    def generate(self, enc, new_tokens: int):
        self.inside = 0.0
        t0 = time.perf_counter()
        ids = enc["input_ids"].numpy()
        B = ids.shape[0]
        question = ids[ids != self.image_token_id].reshape(B, -1)
        feats = self._run("vision_encoder", {"pixel_values": enc["pixel_values"].numpy()})[0]
        text = self._run("embed_tokens", {"input_ids": question})[0]
        embeds = np.concatenate([feats, text], 1)
        mask = np.ones(embeds.shape[:2], np.int64)
        hidden = self._run("encoder_model", {"inputs_embeds": embeds, "attention_mask": mask})[0]
        t_encoder = time.perf_counter()
        seqs = [[mf.EOS_ID] for _ in range(B)]  # decoder_start_token_id
        cache = None
        for step in range(new_tokens):
            last = np.array([[s[-1]] for s in seqs], np.int64)
            feeds = {"encoder_attention_mask": mask, "encoder_hidden_states": hidden,
                     "inputs_embeds": self._run("embed_tokens", {"input_ids": last})[0],
                     "use_cache_branch": np.array([cache is not None])}
            for name, shape in self.past:
                feeds[name] = cache[name] if cache else np.zeros((B, shape[1], 0, shape[3]), np.float32)
            res = dict(zip(self.outs, self._run("decoder_model_merged", feeds)))
            cache = {name: cache[name] if (cache and ".encoder." in name)
                     else res["present." + name[len("past_key_values."):]] for name, _ in self.past}
            for b in range(B):
                sc = res["logits"][b, -1].copy()
                for t in mf.OrtGreedy.banned_ngrams(seqs[b]):
                    sc[t] = -np.inf
                if step + 1 < new_tokens:  # min_new_tokens: no EOS before the last token
                    sc[mf.EOS_ID] = -np.inf
                if step == 0:  # forced BOS
                    sc[:] = -np.inf
                    sc[mf.BOS_ID] = 0
                elif step + 1 == new_tokens:  # forced EOS at max_length
                    sc[:] = -np.inf
                    sc[mf.EOS_ID] = 0
                seqs[b].append(int(sc.argmax()))
        t_end = time.perf_counter()
        return [s[1:] for s in seqs], {"encoder_s": t_encoder - t0, "decode_s": t_end - t_encoder,
                                       "wall_s": t_end - t0, "inside_run_s": self.inside}


def bench_transformers(model, enc, new_tokens: int):
    t = time.perf_counter()
    with torch.no_grad():
        out = model.generate(**enc, max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False,
                             num_beams=1)
    wall = time.perf_counter() - t
    return out[:, 1:].tolist(), {"wall_s": wall}  # without decoder_start_token_id


def run(args):
    model_dir = Path(args.model_dir).expanduser()
    torch.set_num_threads(args.threads)
    proc = processor()
    engines = args.engines.split(",")
    loop = OrtLoop(model_dir, args.threads, args.spinning, proc.image_token_id) if "onnxruntime" in engines else None
    model = None
    if "transformers" in engines:
        from transformers import Florence2ForConditionalGeneration

        model = Florence2ForConditionalGeneration.from_pretrained(model_dir / "torch", dtype=torch.float32).eval()
    N = args.new_tokens
    for batch in [int(b) for b in args.batches.split(",")]:
        enc = inputs(proc, model_dir, batch, args.task)
        common = {"batch": batch, "task": args.task, "new_tokens": N, "image_tokens": proc.num_image_tokens,
                  "encoder_len": int(enc["input_ids"].shape[1]), "threads": args.threads}
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
                        tokens_per_s=round(batch * N / t["wall_s"], 2), ids=ids)
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
    r.add_argument("--batches", default="1,4,8")
    r.add_argument("--new-tokens", type=int, default=32)
    r.add_argument("--task", default="<OCR>")
    r.add_argument("--engines", default="onnxruntime,transformers")
    r.add_argument("--spinning", action="store_true")
    args = ap.parse_args()
    if args.cmd == "make":
        make(Path(args.model_dir).expanduser())
    else:
        run(args)


if __name__ == "__main__":
    main()

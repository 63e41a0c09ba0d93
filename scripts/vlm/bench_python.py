#!/usr/bin/env python3
"""The Python side of `docfleet-bench vlm`: greedy generation with `transformers`' `generate` driving
optimum's onnxruntime sessions (ORTModelForVision2Seq), on pixel values the Rust side wrote.

    bench_python.py MODEL_DIR PIXELS.npy THREADS REPEAT BATCH[,BATCH...]

Prints one JSON line per batch size: images, generated tokens (up to and including EOS, as the
Rust side counts them), wall seconds, seconds inside onnxruntime's InferenceSession.run, and the
generated ids of the first pass (to check both sides produce the same tokens).
"""

import json
import os
import sys
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import numpy as np  # noqa: E402
import onnxruntime as ort  # noqa: E402
import torch  # noqa: E402

# Time spent inside onnxruntime, to compare with the Rust side's time outside session.run.
_inside = [0.0]
_run = ort.InferenceSession.run


def _timed_run(self, *a, **k):
    t = time.perf_counter()
    try:
        return _run(self, *a, **k)
    finally:
        _inside[0] += time.perf_counter() - t


ort.InferenceSession.run = _timed_run


def main():
    model_dir, pixels, threads, repeat, batches = sys.argv[1:6]
    threads, repeat = int(threads), int(repeat)
    from optimum.onnxruntime import ORTModelForVision2Seq

    torch.set_num_threads(threads)
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    t0 = time.perf_counter()
    model = ORTModelForVision2Seq.from_pretrained(model_dir, use_cache=True, session_options=so,
                                                  provider="CPUExecutionProvider")
    load_s = time.perf_counter() - t0
    pv = torch.from_numpy(np.load(pixels))
    eos = model.generation_config.eos_token_id
    eos = set(eos if isinstance(eos, list) else [eos])
    for batch in [int(b) for b in batches.split(",")]:
        def one_pass():
            ids = []
            for i in range(0, len(pv), batch):
                out = model.generate(pixel_values=pv[i:i + batch])
                for row in out.tolist():
                    gen = row[1:]  # after the decoder start token
                    cut = next((k + 1 for k, t in enumerate(gen) if t in eos), len(gen))
                    ids.append(gen[:cut])
            return ids

        first = one_pass()  # warm-up, not timed
        _inside[0] = 0.0
        t = time.perf_counter()
        tokens = 0
        for _ in range(repeat):
            tokens += sum(len(x) for x in one_pass())
        wall = time.perf_counter() - t
        print(json.dumps({"batch": batch, "images": repeat * len(pv), "tokens": tokens, "wall_s": wall,
                          "inside_run_s": _inside[0], "load_s": load_s, "ids": first}), flush=True)


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""GGUF export throughput and block-quantizer speed: slmc vs ggml on the same data.

    .venv/bin/python scripts/bench_export.py [--types f32,f16,q8_0,q4_k_m] [--markdown]

1. Runs `cargo run --release -p slmc-gguf --example bench_export -- TMP TYPES`, which exports a
   random ~96M-parameter Llama (hidden 768, 12 layers, vocab 16384) with every type and times
   slmc's quantizers on one thread over a 4096 × 4096 f32 sample it also writes to TMP.
2. Times ggml's own `ggml_quantize_chunk` (llama.cpp's libggml-base through llama-cpp-python;
   one thread, no importance matrix, i.e. the same reference algorithms) on the same sample and
   checks that the bytes equal slmc's.
3. Prints both speeds and the ratio slmc / ggml.

llama-cpp-python builds ggml with -march=native; slmc's default build targets baseline x86-64
(SSE2). --native builds slmc with -C target-cpu=native too (in target/native) for a like-for-like
comparison.
"""

import argparse
import ctypes
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
GGML_IDS = {"Q8_0": 8, "Q4_0": 2, "Q4_K": 12, "Q5_K": 13, "Q6_K": 14}


def ggml_lib():
    import llama_cpp

    lib = ctypes.CDLL(str(Path(llama_cpp.__file__).parent / "lib" / "libggml-base.so"))
    lib.ggml_quantize_chunk.restype = ctypes.c_size_t
    lib.ggml_quantize_chunk.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64,
                                        ctypes.c_int64, ctypes.c_int64, ctypes.c_void_p]
    lib.ggml_row_size.restype = ctypes.c_size_t
    lib.ggml_row_size.argtypes = [ctypes.c_int, ctypes.c_int64]
    return lib


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--types", default="f32,f16,bf16,q8_0,q4_0,q5_1,q6_k,q5_k_m,q4_k_m")
    ap.add_argument("--native", action="store_true",
                    help="build slmc with -C target-cpu=native (ggml's library is built with -march=native)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        env = dict(os.environ)
        if args.native:
            # Like ggml's default build (GGML_NATIVE): let the compiler use this CPU's vector units.
            env["RUSTFLAGS"] = env.get("RUSTFLAGS", "") + " -C target-cpu=native"
            env["CARGO_TARGET_DIR"] = str(ROOT / "target/native")
        p = subprocess.run(["cargo", "run", "--release", "-q", "-p", "slmc-gguf", "--example", "bench_export", "--",
                            tmp, args.types], cwd=ROOT, check=True, capture_output=True, text=True, env=env)
        rows = [json.loads(line) for line in p.stdout.splitlines() if line.startswith("{")]
        sample = np.fromfile(Path(tmp) / "sample.f32", dtype=np.float32).reshape(4096, 4096)
        lib = ggml_lib()
        ggml = {}
        for name, qt in GGML_IDS.items():
            size = lib.ggml_row_size(qt, 4096) * 4096
            dst = ctypes.create_string_buffer(size)
            best = float("inf")
            for _ in range(3):
                t = time.perf_counter()
                lib.ggml_quantize_chunk(qt, sample.ctypes.data, dst, 0, 4096, 4096, None)
                best = min(best, time.perf_counter() - t)
            ggml[name] = best
            ours = (Path(tmp) / f"sample.{name}").read_bytes()
            same = ours == dst.raw
            print(f"{name}: slmc bytes {'==' if same else '!='} ggml bytes", file=sys.stderr)
            if not same:
                blk = {"Q8_0": 34, "Q4_0": 18, "Q4_K": 144, "Q5_K": 176, "Q6_K": 210}[name]
                a, b = np.frombuffer(ours, np.uint8).reshape(-1, blk), np.frombuffer(dst.raw, np.uint8).reshape(-1, blk)
                print(f"  {int((a != b).any(axis=1).sum())} of {len(a)} blocks differ", file=sys.stderr)
    quant = [r for r in rows if r["kind"] == "quantize"]
    export = [r for r in rows if r["kind"] == "export"]
    print("| ggml type | slmc (MB/s of f32 in, 1 thread) | ggml_quantize_chunk (MB/s, 1 thread) | slmc / ggml |")
    print("|---|---|---|---|")
    for r in quant:
        g = r["input_mb"] / ggml[r["type"]]
        print(f"| {r['type']} | {r['input_mb_per_s']:.1f} | {g:.1f} | {r['input_mb_per_s'] / g:.2f} |")
    print()
    print(f"| --type | file MB | bits/weight | seconds | MB written/s ({export[0]['threads']} threads, {export[0]['params'] / 1e6:.1f}M params) |")
    print("|---|---|---|---|---|")
    for r in export:
        print(f"| {r['type']} | {r['file_mb']:.1f} | {r['bits_per_weight']:.2f} | {r['seconds']:.2f} | {r['mb_written_per_s']:.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())

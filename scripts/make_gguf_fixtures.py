#!/usr/bin/env python3
"""Generate tests/fixtures/gguf/: reference bytes from ggml's own quantizer and reference values
from gguf-py's dequantizer, for slmc's block-quantizer tests (and a tokenizer reference).

    .venv/bin/python scripts/make_gguf_fixtures.py --llama-cpp LLAMA_CPP_DIR

LLAMA_CPP_DIR is the llama.cpp tree vendored by the installed llama-cpp-python (untar its sdist:
`pip download --no-deps --no-binary :all: llama-cpp-python==0.3.36`; it holds
convert_hf_to_gguf.py, conversion/ and gguf-py/).

Needs the packages of scripts/requirements-gguf.txt (gguf, llama-cpp-python, sentencepiece).
Deterministic: fixed seeds; re-running with the same versions rewrites identical files.

Outputs (all small):
* quants.gguf — written with gguf-py's GGUFWriter (so it also tests slmc's reader on a file slmc
  did not write). Tensor `input` (F32, 8 rows × 256) holds test rows with edge cases; for each
  type T in F16, BF16, Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q4_K, Q5_K, Q6_K:
    `T.ggml`    the bytes of `ggml_quantize_chunk(T, input, NULL imatrix)` (llama.cpp's
                 libggml-base, reached through llama-cpp-python), stored with type T;
    `T.dequant` F32: `gguf.quants.dequantize(T.ggml bytes, T)`.
    `T.stream`  the ggml bytes of an 8 × 1024 generated stream (`xorshift_stream`, which the
                 Rust test regenerates), for statistics over 32 K-quant super-blocks (quantized types only).
  Metadata records the versions used.
* tokenizer_hash.json — for tests/fixtures/tokenizer: the ids AutoTokenizer gives for the
  converter's check text (with special tokens) and their sha256, which slmc's Rust port must
  reproduce with the `tokenizers` crate.
* converter/<fixture>.json — for every fixture model and a synthetic 8-layer llama with
  256-wide rows (`kquant_model`, so K-quants and the mixes' use_more_bits rules really apply):
  metadata and tensor hashes of llama.cpp's convert_hf_to_gguf.py --outtype f32 output, and
  tensor types/hashes of llama-quantize's output for several types. slmc's exports must match.
* spm/ — a tiny SentencePiece BPE tokenizer.model trained on tests/fixtures/eval.txt, and
  spm_vocab.json with the tokens/scores/types llama.cpp's converter derives from it
  (`_create_vocab_sentencepiece`, via sentencepiece's own API).
"""

import ctypes
import hashlib
import json
import re
import sys
from importlib.metadata import version
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "tests/fixtures/gguf"
N_PER_ROW = 256
N_STREAM = 32 * 256  # values of the generated stream (32 K-quant super-blocks)

TYPES = ["F16", "BF16", "Q8_0", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q4_K", "Q5_K", "Q6_K"]


def ggml_lib():
    import llama_cpp

    lib_dir = Path(llama_cpp.__file__).parent / "lib"
    lib = ctypes.CDLL(str(lib_dir / "libggml-base.so"))
    lib.ggml_quantize_chunk.restype = ctypes.c_size_t
    lib.ggml_quantize_chunk.argtypes = [
        ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64, ctypes.c_int64, ctypes.c_int64,
        ctypes.c_void_p,
    ]
    lib.ggml_row_size.restype = ctypes.c_size_t
    lib.ggml_row_size.argtypes = [ctypes.c_int, ctypes.c_int64]
    return lib


def ggml_quantize(lib, qtype: int, x: np.ndarray) -> bytes:
    x = np.ascontiguousarray(x, dtype=np.float32)
    nrows, n = x.shape
    size = lib.ggml_row_size(qtype, n) * nrows
    dst = ctypes.create_string_buffer(size)
    got = lib.ggml_quantize_chunk(qtype, x.ctypes.data, dst, 0, nrows, n, None)
    assert got == size, (got, size)
    return dst.raw


def test_rows() -> np.ndarray:
    """8 rows of 256 covering the branches of every quantizer."""
    rng = np.random.default_rng(20260521)
    rows = []
    rows.append(rng.standard_normal(N_PER_ROW) * 0.05)                     # typical weights
    r = rng.standard_normal(N_PER_ROW) * 0.02
    r[rng.choice(N_PER_ROW, 6, replace=False)] *= 40.0                      # outliers
    rows.append(r)
    rows.append(rng.uniform(-1.0, 1.0, N_PER_ROW))                          # uniform, full range
    r = np.abs(rng.standard_normal(N_PER_ROW)) * 0.3 + 0.01                 # all positive (min > 0)
    r[:32] = 0.0                                                            # a zero 32-block
    rows.append(r)
    r = -np.abs(rng.standard_normal(N_PER_ROW)) * 3.0                       # all negative
    r[128:128 + 32] = -0.75                                                 # a constant block
    rows.append(r)
    r = rng.standard_normal(N_PER_ROW) * 1e-6                               # tiny: f16 scales underflow
    r[128:] = 0.0                                                           # and zero 32-blocks
    rows.append(r)
    rows.append(rng.standard_normal(N_PER_ROW) * 300.0)                      # large
    r = np.round(rng.standard_normal(N_PER_ROW) * 4.0) / 4.0                # ties for the roundings
    r[::7] = 0.5
    rows.append(r)
    return np.stack(rows).astype(np.float32)


def xorshift_stream(n: int) -> np.ndarray:
    """The deterministic test stream slmc's Rust tests regenerate (see `stream()` in
    crates/slmc-gguf/tests/ggml_reference.rs): xorshift32 from 0x9E3779B9; value i of 256-block
    b is `(u / 2^32 - 0.5) * 10^(b % 7 - 3) + (b % 3 - 1) * 0.2 * 10^(b % 7 - 3)`, with every 37th
    value times 8; computed in f64 and rounded to f32."""
    x = 0x9E3779B9
    out = np.empty(n, dtype=np.float32)
    for i in range(n):
        x ^= (x << 13) & 0xFFFFFFFF
        x ^= x >> 17
        x ^= (x << 5) & 0xFFFFFFFF
        b = i // 256
        scale = 10.0 ** (b % 7 - 3)
        v = (x / 4294967296.0 - 0.5) * scale + (b % 3 - 1) * 0.2 * scale
        if i % 37 == 0:
            v *= 8.0
        out[i] = np.float32(v)
    return out


def make_quants():
    import gguf
    from gguf.quants import dequantize

    lib = ggml_lib()
    x = test_rows()
    w = gguf.GGUFWriter(str(OUT / "quants.gguf"), arch="slmc-test")
    w.add_string("slmc.generated_by", "scripts/make_gguf_fixtures.py")
    w.add_string("slmc.versions", f"gguf {version('gguf')}, llama-cpp-python {version('llama-cpp-python')}, "
                 f"numpy {version('numpy')}")
    w.add_tensor("input", x)
    for name in TYPES:
        qt = gguf.GGMLQuantizationType[name]
        raw = ggml_quantize(lib, int(qt), x)
        block, tsize = gguf.GGML_QUANT_SIZES[qt]
        arr = np.frombuffer(raw, dtype=np.uint8).reshape(x.shape[0], N_PER_ROW // block * tsize)
        deq = dequantize(arr, qt).astype(np.float32)
        assert deq.shape == x.shape
        w.add_tensor(f"{name}.ggml", arr, raw_shape=arr.shape, raw_dtype=qt)
        w.add_tensor(f"{name}.dequant", deq)
        err = np.abs(deq - x).max() / np.abs(x).max()
        print(f"{name:5s} {len(raw):6d} bytes  max rel err {err:.4f}")
    stream = xorshift_stream(N_STREAM).reshape(-1, 1024)
    for name in TYPES[2:]:  # the quantized types (F16/BF16 are covered by the rows above)
        qt = gguf.GGMLQuantizationType[name]
        raw = ggml_quantize(lib, int(qt), stream)
        block, tsize = gguf.GGML_QUANT_SIZES[qt]
        arr = np.frombuffer(raw, dtype=np.uint8).reshape(stream.shape[0], 1024 // block * tsize)
        w.add_tensor(f"{name}.stream", arr, raw_shape=arr.shape, raw_dtype=qt)
    w.add_float32("slmc.stream_checksum", float(np.float64(stream.astype(np.float64).sum())))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def rust_literal_to_str(lit: str) -> str:
    """Decodes the Rust string literal gen_gguf_pre_table.py writes (\\n, \\t, \\", \\\\, \\u{...})."""
    body = lit[1:-1]
    simple = {"n": "\n", "t": "\t"}
    return re.sub(r"\\u\{([0-9a-f]+)\}|\\(.)",
                  lambda m: chr(int(m.group(1), 16)) if m.group(1) else simple.get(m.group(2), m.group(2)),
                  body)


def make_tokenizer_hash():
    from transformers import AutoTokenizer

    # The check text is taken from the generated Rust table, to test exactly that copy.
    rs = (ROOT / "crates/slmc-gguf/src/pre_table.rs").read_text()
    lit = rs.split("pub const CHKTXT: &str = ", 1)[1].split(";\n", 1)[0]
    chktxt = rust_literal_to_str(lit)
    digest = hashlib.sha256(chktxt.encode()).hexdigest()
    assert digest == "a36179c1e2b1cfcfbfad1dc779addad2ffc778201e4cf0d538bddeafa2c526da", digest
    tok = AutoTokenizer.from_pretrained(ROOT / "tests/fixtures/tokenizer")
    ids = tok.encode(chktxt)
    ref = {
        "tokenizer": "tests/fixtures/tokenizer",
        "ids": ids,
        "sha256": hashlib.sha256(str(ids).encode()).hexdigest(),
        "transformers": version("transformers"),
        "tokenizers": version("tokenizers"),
    }
    (OUT / "tokenizer_hash.json").write_text(json.dumps(ref, indent=1) + "\n")
    print(f"tokenizer hash {ref['sha256']} ({len(ids)} ids)")


def make_spm():
    import sentencepiece as spm

    d = OUT / "spm"
    d.mkdir(exist_ok=True)
    text = (ROOT / "tests/fixtures/eval.txt").read_text()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(text.split(". ")), model_prefix=str(d / "tokenizer"), vocab_size=400,
        model_type="bpe", byte_fallback=True, character_coverage=1.0, user_defined_symbols=["<|user|>"],
        num_threads=1, normalization_rule_name="identity", minloglevel=2,
    )
    (d / "tokenizer.vocab").unlink()
    sp = spm.SentencePieceProcessor(model_file=str(d / "tokenizer.model"))
    tokens, scores, types = [], [], []
    for i in range(sp.vocab_size()):
        tokens.append(sp.IdToPiece(i))
        scores.append(sp.GetScore(i))
        t = 1
        if sp.IsUnknown(i):
            t = 2
        elif sp.IsControl(i):
            t = 3
        elif sp.IsUnused(i):
            t = 5
        elif sp.IsByte(i):
            t = 6
        types.append(t)
    ref = {"sentencepiece": version("sentencepiece"), "tokens": tokens, "scores": scores, "types": types}
    (d / "spm_vocab.json").write_text(json.dumps(ref, ensure_ascii=False) + "\n")
    print(f"spm: {len(tokens)} pieces")


VARIANTS = ["llama_gqa", "llama_tied_bf16", "llama3_rope", "llama_linear_v4", "mistral_sharded",
            "qwen2_bias", "phi3_fused", "phi3_longrope"]
# llama-quantize types recorded per fixture model / for the synthetic K-quant model.
FIXTURE_QTYPES = ["f16", "bf16", "q8_0", "q4_0", "q5_1", "q4_k_m"]
KQ_QTYPES = ["q8_0", "q4_0", "q4_1", "q5_0", "q5_1", "q6_k", "q4_k_s", "q4_k_m", "q5_k_s", "q5_k_m", "q4_k", "q5_k"]
FTYPES = {"f16": 1, "q4_0": 2, "q4_1": 3, "q8_0": 7, "q5_0": 8, "q5_1": 9, "q4_k_s": 14, "q4_k_m": 15,
          "q5_k_s": 16, "q5_k_m": 17, "q6_k": 18, "bf16": 32, "q4_k": 14, "q5_k": 16}
# The synthetic model (keep in sync with `kquant_model_dir` in crates/slmc-cli/tests/gguf_cli.rs).
KQ_CONFIG = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "vocab_size": 384, "hidden_size": 256,
             "intermediate_size": 512, "num_hidden_layers": 8, "num_attention_heads": 4, "num_key_value_heads": 2,
             "head_dim": 64, "max_position_embeddings": 128, "rms_norm_eps": 1e-05, "rope_theta": 10000.0,
             "tie_word_embeddings": False, "torch_dtype": "float32", "bos_token_id": 0, "eos_token_id": 1,
             "hidden_act": "silu"}


def convert(model_dir: Path, out: Path, llama_cpp_dir: Path) -> None:
    """llama.cpp's convert_hf_to_gguf.py --outtype f32. The fixtures' tokenizer is not in the
    converter's pre-tokenizer hash table (it refuses unknown ones), so get_vocab_base_pre is
    patched to return "gpt-2", which is what slmc's documented fallback picks for it, and the
    tokenizer is loaded as PreTrainedTokenizerFast and Phi-3 uses the byte-level BPE vocabulary
    path (see the comments in the code)."""
    code = f"""
import sys, runpy
sys.path[:0] = [{str(llama_cpp_dir / "gguf-py")!r}, {str(llama_cpp_dir)!r}]
import conversion.base as base
base.TextModel.get_vocab_base_pre = lambda self, tok: "gpt-2"
import transformers
# transformers 5 builds Qwen2Tokenizer for model_type qwen2, which adds <|endoftext|> beyond the
# fixture's 384-token vocabulary (the converter then asserts); read tokenizer.json as it is.
transformers.AutoTokenizer.from_pretrained = transformers.PreTrainedTokenizerFast.from_pretrained
# Phi3MiniModel.set_vocab wants a SentencePiece tokenizer.model unless tokenizer_class is
# GPT2Tokenizer (Phi-4); the fixtures carry a byte-level BPE tokenizer.json only.
import conversion.phi as phi
phi.Phi3MiniModel.set_vocab = base.TextModel._set_vocab_gpt2
sys.argv = ["convert_hf_to_gguf.py", {str(model_dir)!r}, "--outtype", "f32", "--outfile", {str(out)!r}]
runpy.run_path({str(llama_cpp_dir / "convert_hf_to_gguf.py")!r}, run_name="__main__")
"""
    import subprocess

    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True)


def llama_quantize(src: Path, dst: Path, ty: str) -> None:
    import llama_cpp

    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = FTYPES[ty]
    params.pure = ty in ("q4_k", "q5_k")
    params.nthread = 1
    rc = llama_cpp.llama_model_quantize(str(src).encode(), str(dst).encode(), ctypes.byref(params))
    assert rc == 0, rc


def short_hash(b: bytes) -> str:
    return hashlib.sha256(b).hexdigest()[:16]


def summarize(path: Path, with_metadata: bool) -> dict:
    """Tensors (type, ne, hash of the bytes; ne only with metadata) and, optionally, metadata (types and values; arrays
    longer than 16 as length + hash of their compact JSON)."""
    from gguf import GGUFReader

    r = GGUFReader(str(path))
    if with_metadata:
        out = {"tensors": {t.name: [t.tensor_type.name, [int(d) for d in t.shape], short_hash(t.data.tobytes())]
                           for t in r.tensors}}
    else:  # quantized versions: shapes are those of the f32 file
        out = {"tensors": {t.name: [t.tensor_type.name, short_hash(t.data.tobytes())] for t in r.tensors}}
    if with_metadata:
        meta = {}
        for k, f in r.fields.items():
            if k.startswith("GGUF.") or k in ("general.name", "general.size_label"):
                continue
            v = f.contents()
            if isinstance(v, list) and len(v) > 16:
                v = {"len": len(v), "json_sha256": short_hash(
                    json.dumps(v, ensure_ascii=False, separators=(",", ":")).encode())}
            meta[k] = [[t.name for t in f.types], v]
        out["metadata"] = meta
    return out


def kquant_model(d: Path) -> None:
    """The synthetic 8-layer llama whose rows are long enough for K-quants: every tensor, in
    sorted-name order, takes the next values of one xorshift stream."""
    from safetensors.numpy import save_file

    names = {"model.embed_tokens.weight": [384, 256], "model.norm.weight": [256], "lm_head.weight": [384, 256]}
    for i in range(8):
        p = f"model.layers.{i}."
        names |= {p + "input_layernorm.weight": [256], p + "post_attention_layernorm.weight": [256],
                  p + "self_attn.q_proj.weight": [256, 256], p + "self_attn.k_proj.weight": [128, 256],
                  p + "self_attn.v_proj.weight": [128, 256], p + "self_attn.o_proj.weight": [256, 256],
                  p + "mlp.gate_proj.weight": [512, 256], p + "mlp.up_proj.weight": [512, 256],
                  p + "mlp.down_proj.weight": [256, 512]}
    total = sum(int(np.prod(s)) for s in names.values())
    stream = xorshift_stream(total)
    tensors, at = {}, 0
    for name in sorted(names):
        n = int(np.prod(names[name]))
        tensors[name] = stream[at:at + n].reshape(names[name])
        at += n
    d.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(d / "model.safetensors"), metadata={"format": "pt"})
    (d / "config.json").write_text(json.dumps(KQ_CONFIG, indent=2) + "\n")
    for f in ("tokenizer.json", "tokenizer_config.json"):
        (d / f).write_bytes((ROOT / "tests/fixtures/tokenizer" / f).read_bytes())


def dump_ref(ref: dict) -> str:
    """JSON with one tensor / metadata key per line (small and diffable)."""
    c = lambda v: json.dumps(v, ensure_ascii=False, separators=(",", ":"))  # noqa: E731
    lines = ["{", f' "generated_by": {c(ref["generated_by"])},']
    sections = [k for k in ref if k != "generated_by"]
    for si, key in enumerate(sections):
        lines.append(f" {c(key)}: {{")
        parts = list(ref[key].items())
        for pi, (part, entries) in enumerate(parts):
            lines.append(f"  {c(part)}: {{")
            items = list(entries.items())
            for i, (k, v) in enumerate(items):
                lines.append(f"   {c(k)}: {c(v)}" + ("," if i + 1 < len(items) else ""))
            lines.append("  }" + ("," if pi + 1 < len(parts) else ""))
        lines.append(" }" + ("," if si + 1 < len(sections) else ""))
    lines.append("}")
    return "\n".join(lines) + "\n"


def make_converter_refs(llama_cpp_dir: Path):
    """References from llama.cpp's own tools: convert_hf_to_gguf.py (f32) and llama-quantize."""
    import tempfile

    out_dir = OUT / "converter"
    out_dir.mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        jobs = [(v, ROOT / "tests/fixtures/models" / v, FIXTURE_QTYPES) for v in VARIANTS]
        kq = tmp / "kquant_llama"
        kquant_model(kq)
        jobs.append(("kquant_llama", kq, KQ_QTYPES))
        for name, model_dir, qtypes in jobs:
            f32 = tmp / f"{name}.f32.gguf"
            convert(model_dir, f32, llama_cpp_dir)
            ref = {"generated_by": "scripts/make_gguf_fixtures.py: convert_hf_to_gguf.py --outtype f32, then "
                                   "llama-quantize (llama-cpp-python " + version("llama-cpp-python") + ")",
                   "f32": summarize(f32, with_metadata=True)}
            for ty in qtypes:
                q = tmp / f"{name}.{ty}.gguf"
                llama_quantize(f32, q, ty)
                ref[ty] = summarize(q, with_metadata=False)
            (out_dir / f"{name}.json").write_text(dump_ref(ref))
            print(f"converter reference {name}: {len(ref['f32']['tensors'])} tensors, types {qtypes}")


def main():
    import argparse

    ap = argparse.ArgumentParser()
    ap.add_argument("--llama-cpp", type=Path, required=True,
                    help="llama.cpp source tree matching the installed llama-cpp-python (its vendor/llama.cpp)")
    args = ap.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    make_quants()
    make_tokenizer_hash()
    make_spm()
    make_converter_refs(args.llama_cpp)
    return 0


if __name__ == "__main__":
    sys.exit(main())

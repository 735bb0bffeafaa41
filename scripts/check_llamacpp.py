#!/usr/bin/env python3
"""Load slmc's GGUF export of every tiny fixture architecture in llama.cpp (llama-cpp-python) and
compare llama.cpp's logits with transformers'.

    .venv/bin/python scripts/check_llamacpp.py [--slmc target/release/slmc] [--types f32,q8_0,q4_0]
                                               [--rel-tol 5e-3] [--markdown]

For each fixture in tests/fixtures/models/ and each export type:
1. `slmc export FIXTURE --format gguf --type TYPE -o tmp.gguf`;
2. the file is validated with gguf-py's GGUFReader plus the checks gguf-py does not make
   (llama.cpp's value types, exactly cumulative offsets, names < 64 bytes, no trailing bytes);
3. llama.cpp loads it (F32 KV cache, no flash attention, CPU, no repacking buffers: see
   `no_extra_buffers`) and evaluates both rows of the
   fixture's `input_ids` (48 tokens each, fed as-is: no BOS added);
4. for quantized types, llama.cpp's own llama-quantize (C API) quantizes slmc's F32 export with
   the same type; tensor names and types must be identical, and identical bytes are counted;
5. the reference is transformers' float32 forward pass on the *same* weights: for f32 exports the
   fixture's own `logits`; for quantized exports, transformers run on the weights dequantized from
   the GGUF file by gguf-py (so the comparison isolates llama.cpp's reading of slmc's blocks from
   the quantization error itself).
The metric is max|llama.cpp − transformers| / max|transformers logit| over all positions.

mistral_sharded has a 16-token sliding window that llama.cpp's `llama` architecture does not
implement (convert_hf_to_gguf.py drops it too): its full 48-token rows are compared with
transformers run with the window disabled, and its first 16 positions also with the fixture.

llama.cpp's tokenizer is checked too: tokenizing the texts of tests/fixtures/tokenizer/reference.json
with the GGUF vocabulary must give transformers' ids.

Exit status 1 if any f32 comparison exceeds --rel-tol, a file fails validation, a tokenization
differs, or a tensor's type differs from llama-quantize's. Quantized exports use --quant-rel-tol
(default 1e-1): llama.cpp quantizes the activations to 8 bits (Q8_0/Q8_K) for quantized matmuls
and to f16 for f16 ones, which on these random tiny models moves logits by a few percent; a
misread block layout moves them by ~100 %. The difference to the unquantized model is printed too.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np  # noqa: E402

from llamacpp_compat import no_extra_buffers  # noqa: E402
import torch  # noqa: E402
from safetensors.torch import load_file  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "tests/fixtures/models"
VARIANTS = ["llama_gqa", "llama_tied_bf16", "llama3_rope", "llama_linear_v4", "mistral_sharded",
            "qwen2_bias", "phi3_fused", "phi3_longrope", "gemma_geglu", "gemma2_softcap", "gemma3_text_swa",
            "gemma3_mm", "granite_mult", "phi2_parallel", "qwen3_qknorm", "smollm3_nope"]

VALUE_TYPES = {
    "context_length": "UINT32", "embedding_length": "UINT32", "block_count": "UINT32",
    "feed_forward_length": "UINT32", "attention.head_count": "UINT32", "attention.head_count_kv": "UINT32",
    "attention.layer_norm_rms_epsilon": "FLOAT32", "rope.freq_base": "FLOAT32",
    "rope.dimension_count": "UINT32", "attention.key_length": "UINT32", "attention.value_length": "UINT32",
    "rope.scaling.factor": "FLOAT32", "rope.scaling.attn_factor": "FLOAT32",
    "rope.scaling.original_context_length": "UINT32", "attention.sliding_window": "UINT32",
}


def validate(path: Path):
    """docs/formats.md §5: GGUFReader plus llama.cpp's stricter rules. Returns (reader, kv)."""
    from gguf import GGML_QUANT_SIZES, GGUFReader
    from gguf.quants import dequantize

    r = GGUFReader(str(path))
    assert r.fields["GGUF.version"].contents() == 3
    kv = {k: f.contents() for k, f in r.fields.items() if not k.startswith("GGUF.")}
    types = {k: [t.name for t in f.types] for k, f in r.fields.items()}
    arch = kv["general.architecture"]
    for suffix, want in VALUE_TYPES.items():
        key = f"{arch}.{suffix}"
        if key in types:
            assert types[key] == [want], (key, types[key])
    assert types["tokenizer.ggml.token_type"] == ["ARRAY", "INT32"]
    assert types["general.file_type"] == ["UINT32"]
    assert len(set(kv["tokenizer.ggml.tokens"])) == len(kv["tokenizer.ggml.tokens"]), "duplicate tokens"
    expected = 0
    for t in r.tensors:
        assert len(t.name.encode()) < 64, t.name
        assert t.data_offset - r.data_offset == expected, (t.name, t.data_offset - r.data_offset, expected)
        bs, _ = GGML_QUANT_SIZES[t.tensor_type]
        assert int(t.shape[0]) % bs == 0
        expected += -(-int(t.n_bytes) // r.alignment) * r.alignment
        x = dequantize(t.data, t.tensor_type)
        assert np.isfinite(x).all(), t.name
    assert r.data_offset + expected == len(r.data), "trailing bytes or missing padding"
    return r, kv


def gguf_to_hf_state(r, kv, arch: str) -> dict[str, torch.Tensor]:
    """Dequantized GGUF tensors under Hugging Face names (undoing the llama Q/K permutation)."""
    from gguf.quants import dequantize

    phi2 = arch == "phi2"
    sandwich = arch in ("gemma2", "gemma3")
    inv = {"token_embd": "model.embed_tokens", "output_norm": "model.final_layernorm" if phi2 else "model.norm",
           "output": "lm_head"}
    blk = {"attn_norm": "input_layernorm",
           "ffn_norm": "pre_feedforward_layernorm" if sandwich else "post_attention_layernorm",
           "post_attention_norm": "post_attention_layernorm", "post_ffw_norm": "post_feedforward_layernorm",
           "attn_q_norm": "self_attn.q_norm", "attn_k_norm": "self_attn.k_norm", "attn_q": "self_attn.q_proj",
           "attn_k": "self_attn.k_proj", "attn_v": "self_attn.v_proj",
           "attn_output": "self_attn.dense" if phi2 else "self_attn.o_proj",
           "attn_qkv": "self_attn.qkv_proj", "ffn_gate": "mlp.gate_proj",
           "ffn_down": "mlp.fc2" if phi2 else "mlp.down_proj",
           "ffn_up": "mlp.gate_up_proj" if arch == "phi3" else ("mlp.fc1" if phi2 else "mlp.up_proj")}
    n_head = kv[f"{arch}.attention.head_count"]
    n_kv = kv[f"{arch}.attention.head_count_kv"]
    out = {}
    for t in r.tensors:
        if t.name.startswith(("rope_freqs", "rope_factors")):
            continue
        x = dequantize(t.data, t.tensor_type).astype(np.float32)
        base, kind = t.name.rsplit(".", 1)
        if base.startswith("blk."):
            _, i, b = base.split(".", 2)
            name = f"model.layers.{i}.{blk[b]}.{kind}"
        else:
            name = f"{inv[base]}.{kind}"
        if arch.startswith("gemma") and base.endswith("norm") and kind == "weight":
            x = x - 1.0  # llama.cpp's gemma norms hold 1 + w
        if arch in ("llama", "granite", "smollm3") and base.endswith(("attn_q", "attn_k")):
            h = n_head if base.endswith("attn_q") else n_kv
            d = x.shape[0] // h
            x = x.reshape(h, d // 2, 2, *x.shape[1:]).swapaxes(1, 2).reshape(x.shape)
        out[name] = torch.from_numpy(np.ascontiguousarray(x))
    return out


def hf_logits(variant: str, ids: torch.Tensor, state=None, no_window=False) -> torch.Tensor:
    from transformers import AutoConfig, AutoModelForCausalLM

    cfg = AutoConfig.from_pretrained(FIXTURES / variant)
    if no_window:
        cfg.sliding_window = None
    if variant == "gemma3_mm":
        from transformers import AutoModelForImageTextToText as Auto
    else:
        Auto = AutoModelForCausalLM
    model = Auto.from_pretrained(FIXTURES / variant, config=cfg, dtype=torch.float32, attn_implementation="eager")
    model.eval()
    if state is not None:
        if variant == "gemma3_mm":  # the language model of the multimodal class
            state = {(f"model.language_model.{k[6:]}" if k.startswith("model.") else k): v for k, v in state.items()}
        missing, unexpected = model.load_state_dict(state, strict=False)
        tied = getattr(cfg, "tie_word_embeddings", False) or getattr(cfg.get_text_config(), "tie_word_embeddings", False)
        missing = [m for m in missing if not (m == "lm_head.weight" and tied)
                   and not m.startswith(("model.vision_tower.", "model.multi_modal_projector."))]
        assert not missing and not unexpected, (missing, unexpected)
        if tied:
            model.tie_weights()
    with torch.no_grad():
        return model(input_ids=ids, use_cache=False).logits.float()


FTYPES = {"f32": 0, "f16": 1, "q4_0": 2, "q4_1": 3, "q8_0": 7, "q5_0": 8, "q5_1": 9, "q4_k_s": 14,
          "q4_k_m": 15, "q5_k_s": 16, "q5_k_m": 17, "q6_k": 18, "bf16": 32, "q4_k": 14, "q5_k": 16}


class silenced_stderr:
    """Redirects file descriptor 2 (llama.cpp logs from C) to /dev/null."""

    def __enter__(self):
        sys.stderr.flush()
        self.saved = os.dup(2)
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 2)
        os.close(devnull)

    def __exit__(self, *exc):
        os.dup2(self.saved, 2)
        os.close(self.saved)


def llama_quantize(src: Path, dst: Path, ty: str) -> None:
    """llama.cpp's own llama-quantize (the C API) from slmc's F32 export."""
    import ctypes

    import llama_cpp

    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = FTYPES[ty]
    params.pure = ty in ("q4_k", "q5_k")
    params.nthread = 1
    with silenced_stderr():
        rc = llama_cpp.llama_model_quantize(str(src).encode(), str(dst).encode(), ctypes.byref(params))
    assert rc == 0, f"llama_model_quantize failed ({rc})"


def compare_with_llama_quantize(ours: Path, theirs: Path) -> tuple[str, str]:
    """(types identical?, bytes identical?) between slmc's tensors and llama-quantize's."""
    from gguf import GGUFReader

    a = {t.name: t for t in GGUFReader(str(ours)).tensors}
    b = {t.name: t for t in GGUFReader(str(theirs)).tensors}
    if set(a) != set(b):
        return f"names differ: {sorted(set(a) ^ set(b))}", "-"
    bad_types = [n for n in a if a[n].tensor_type != b[n].tensor_type]
    if bad_types:
        return "types differ: " + ", ".join(f"{n} {a[n].tensor_type.name}/{b[n].tensor_type.name}" for n in bad_types), "-"
    same = sum(bytes(a[n].data.tobytes()) == bytes(b[n].data.tobytes()) for n in a)
    return "yes", f"{same}/{len(a)}"


def llama_logits(path: Path, ids: torch.Tensor, model_dir: Path) -> np.ndarray:
    import llama_cpp

    llm = llama_cpp.Llama(model_path=str(path), n_ctx=128, n_batch=128, n_ubatch=128, logits_all=True,
                          n_threads=2, type_k=0, type_v=0, flash_attn=False, verbose=False)
    rows = []
    for row in ids.tolist():
        llm.reset()
        llm.eval(row)
        rows.append(np.array(llm.scores[: len(row)], dtype=np.float32))
    tok_ok = check_tokenizer(llm, model_dir)
    del llm
    return np.stack(rows), tok_ok


def check_tokenizer(llm, model_dir: Path) -> tuple[int, int]:
    """llama.cpp's ids for the tokenizer reference texts against transformers': the committed ids
    for the shared byte-level BPE fixture tokenizer, transformers run live for a model directory
    with a tokenizer of its own (gemma_geglu's SentencePiece-style one)."""
    ref = json.loads((ROOT / "tests/fixtures/tokenizer/reference.json").read_text())
    tok = None
    shared = (ROOT / "tests/fixtures/tokenizer/tokenizer.json").read_bytes()
    if (model_dir / "tokenizer.json").read_bytes() != shared:
        from transformers import AutoTokenizer

        tok = AutoTokenizer.from_pretrained(model_dir)
    ok = 0
    for case in ref["cases"]:
        want = case["ids"] if tok is None else tok(case["text"])["input_ids"]
        got = llm.tokenize(case["text"].encode("utf-8"), add_bos=True, special=False)
        ok += got == want
    return ok, len(ref["cases"])


def rel(a: np.ndarray, ref: torch.Tensor) -> float:
    ref = ref.numpy()
    return float(np.abs(a - ref).max() / np.abs(ref).max())


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--slmc", type=Path, default=ROOT / "target/release/slmc")
    ap.add_argument("--types", default="f32,f16,q8_0,q4_0,q5_1")
    ap.add_argument("--variants", default=",".join(VARIANTS))
    ap.add_argument("--rel-tol", type=float, default=5e-3)
    ap.add_argument("--quant-rel-tol", type=float, default=1e-1)
    ap.add_argument("--markdown", action="store_true")
    args = ap.parse_args()
    import transformers

    transformers.logging.set_verbosity_error()
    no_extra_buffers()
    failed = False
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for variant in args.variants.split(","):
            ref = load_file(str(FIXTURES / variant / "reference.safetensors"))
            ids = ref["input_ids"]
            f32 = Path(tmp) / f"{variant}.f32-src.gguf"
            subprocess.run([str(args.slmc), "export", str(FIXTURES / variant), "--format", "gguf", "--type", "f32",
                            "-o", str(f32)], check=True, capture_output=True)
            for ty in args.types.split(","):
                out = Path(tmp) / f"{variant}.{ty}.gguf"
                p = subprocess.run([str(args.slmc), "export", str(FIXTURES / variant), "--format", "gguf",
                                    "--type", ty, "-o", str(out)], capture_output=True, text=True)
                if p.returncode != 0:
                    print(f"FAIL {variant} {ty}: slmc export: {p.stderr.strip()}")
                    failed = True
                    continue
                try:
                    r, kv = validate(out)
                except AssertionError as e:
                    print(f"FAIL {variant} {ty}: validation: {e}")
                    failed = True
                    continue
                try:
                    got, (tok_ok, tok_n) = llama_logits(out, ids, FIXTURES / variant)
                except ValueError as e:
                    print(f"FAIL {variant} {ty}: llama.cpp: {e}")
                    failed = True
                    continue
                arch = kv["general.architecture"]
                window = variant == "mistral_sharded"
                if ty == "f32":
                    want = hf_logits(variant, ids, no_window=True) if window else ref["logits"]
                    tol = args.rel_tol
                else:
                    want = hf_logits(variant, ids, state=gguf_to_hf_state(r, kv, arch), no_window=window)
                    tol = args.quant_rel_tol
                d = rel(got, want)
                extra = ""
                if ty != "f32":
                    orig = hf_logits(variant, ids, no_window=True) if window else ref["logits"]
                    extra = f"; vs unquantized model {rel(got, orig):.2e}"
                if window and ty == "f32":
                    d16 = rel(got[:, :16], ref["logits"][:, :16])
                    extra = f"; first 16 positions vs fixture (with window): {d16:.2e}"
                    d = max(d, d16)
                types = sorted({t.tensor_type.name for t in r.tensors})
                same_types, same_bytes = "-", "-"
                if ty != "f32":
                    theirs = Path(tmp) / f"{variant}.{ty}.llama-quantize.gguf"
                    llama_quantize(f32, theirs, ty)
                    same_types, same_bytes = compare_with_llama_quantize(out, theirs)
                    extra += f"; vs llama-quantize: types identical {same_types}, tensors byte-identical {same_bytes}"
                    failed |= same_types != "yes"
                ok = d <= tol and tok_ok == tok_n
                failed |= not ok
                rows.append((variant, arch, ty, "/".join(types), d, tol, f"{tok_ok}/{tok_n}", same_bytes))
                print(f"{'ok  ' if ok else 'FAIL'} {variant:16s} {arch:6s} {ty:5s} max rel diff {d:.2e} "
                      f"(tol {tol:.0e}) tokenizer {tok_ok}/{tok_n}{extra}", flush=True)
    if args.markdown:
        print("\n| fixture | GGUF arch | --type | tensor types | max rel logit diff vs transformers | llama.cpp tokenizer | tensors byte-identical to llama-quantize |")
        print("|---|---|---|---|---|---|---|")
        for v, a, t, ts, d, tol, tk, sb in rows:
            print(f"| {v} | {a} | {t} | {ts} | {d:.1e} | {tk} | {sb} |")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""Write tiny Hugging Face checkpoints plus transformers' reference outputs as test fixtures.

Usage (from the repository root):

    scripts/setup_python.sh && .venv/bin/python scripts/make_fixtures.py

Everything is deterministic (fixed seeds, CPU, float32 math): re-running it rewrites byte-identical
files for the same package versions (see scripts/requirements.txt). Output goes to tests/fixtures/:

    tokenizer/            byte-level BPE (tokenizer.json + tokenizer_config.json) + reference.json
    eval.txt              an English paragraph for the text perplexity reference
    models/<variant>/     config.json, generation_config.json, *.safetensors, tokenizer files,
                          reference.safetensors, reference.json, eval.jsonl

Python is only needed to (re)generate the fixtures; nothing reads it at run time or in CI.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import shutil
import sys
from pathlib import Path

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")

import torch  # noqa: E402
import transformers  # noqa: E402
from safetensors.torch import save_file  # noqa: E402
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers  # noqa: E402
from transformers import (  # noqa: E402
    AutoModelForCausalLM,
    AutoTokenizer,
    LlamaConfig,
    MistralConfig,
    Phi3Config,
    PreTrainedTokenizerFast,
    Qwen2Config,
)

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "tests" / "fixtures"
TF_MAJOR = int(transformers.__version__.split(".")[0])

VOCAB = 384
SEQ = 48
SHORT = 12
BOS, EOS, PAD = 0, 1, 2

# --------------------------------------------------------------------------------------------
# Text. Written for these fixtures (no third-party text).
# --------------------------------------------------------------------------------------------

TRAIN_TEXT = """\
The old lighthouse stood at the end of the harbour wall, and every evening at six o'clock the keeper climbed its 112 steps to light the lamp.
He had done so for 31 years. The wind came in from the west, the gulls complained, and the boats returned one by one: the Mary Ellen, the Swift, the Northern Star.

"Will there be a storm tonight?" asked the boy who sold newspapers by the gate.
"There is always a storm somewhere," the keeper said. "The question is whether it comes here."

In the town, the market opened at 7:30 on Saturdays. Farmers brought apples, pears, cheese and bread; a man with a grey beard sold honey at 4 shillings a jar.
Children ran between the stalls, shouting numbers at each other -- 1, 2, 3, 10, 20, 100! -- as if counting were a game that could be won.

A river ran through the middle of the valley. In spring it was brown and fast; in summer it was clear and slow, and you could see small fish turning in the light.
The mill by the bridge had stopped working in 1887, but its wheel still turned when the water was high.

Chapter 2. The Letter

She opened the envelope carefully. Inside was a single sheet of paper, folded twice, with three lines written in blue ink:
    Meet me at the station on Tuesday.
    Bring the map, the key, and the small brown book.
    Tell no one.
She read it again, then a third time. Who would write such a thing? And why now, after all these years?

Science, too, begins with questions. Why does the sky turn red at sunset? Why does ice float on water? Why do some stars shine steadily while others flicker?
A careful observer writes down what she sees, measures what she can, and tries to explain the rest. Water boils at 100 degrees and freezes at 0; light travels about 300,000 kilometres in one second.
The Earth goes around the Sun once every 365.25 days, which is why we add a day to the calendar every fourth year.

Recipe for a simple loaf: take 500 g of flour, 10 g of salt, 7 g of yeast and 350 ml of warm water. Mix, knead for ten minutes, and leave it to rise for an hour.
Shape the dough, let it rest again, then bake at 220 degrees for 30-35 minutes. The crust should be dark and the loaf should sound hollow when tapped.

Mathematics is the art of giving the same name to different things. Two plus two is four; three times seven is twenty-one; the square root of 144 is 12.
If x = 5 and y = 8, then x + y = 13 and x * y = 40. A triangle has three sides, a square has four, and a circle, some say, has infinitely many.

The train left at 9:15. Through the window the fields went past: green, yellow, brown, green again. A woman in a red coat was reading a newspaper; a man was asleep with his hat over his eyes.
At every station the guard called out the name -- Ashford! Hollybrook! Kingsmere! -- and a few people got off, and a few got on.

"I think," said the professor, "that we have been asking the wrong question." He put down his pen. "We keep asking how it works. We should be asking why it works at all."
Nobody answered. Outside, it had started to rain, and the sound of the water on the roof filled the room.

Winter came early that year. By November the lake was frozen, and by December the snow lay so deep that the road to the village was closed for a week.
People stayed indoors, burned wood in their stoves, told stories, played cards, and waited. On the shortest day of the year the sun rose at 8:04 and set at 15:53.

Good morning! How are you? I'm fine, thank you. It's a lovely day, isn't it? Yes -- though they say it will rain later. Well, we shall see.
Don't forget: the meeting is at 10 a.m. in room 4B, and lunch is at half past twelve. Please bring your notes; we'll need them.
"""

EVAL_TEXT = """\
On the morning of the fair, the whole village woke before dawn. Lanterns were hung along the lane, tables were carried out of barns, and somebody's dog ran in circles barking at the excitement. By eight o'clock the first carts had arrived from the farms on the hill, loaded with pumpkins, onions, baskets of eggs and jars of plum jam. A brass band of eleven players tuned their instruments behind the church, producing sounds that were not yet music but promised to become it. The baker had been up since three; his window was full of round loaves, sticky buns and a cake shaped like a castle, complete with towers and a drawbridge made of biscuit. Old Mrs. Hale, who was ninety-four and claimed to remember every fair since 1931, sat on a chair by the well and told anyone who would listen that the weather used to be better. At noon the mayor gave a short speech that was not short at all. Then came the races: children in sacks, men carrying eggs on spoons, and a donkey that refused to move no matter who pulled its rope. In the afternoon clouds gathered over the river, and for a few minutes it seemed that the rain would spoil everything; but the wind changed, the sun came back, and the band played louder than before. When evening fell, the lanterns were lit, people danced on the grass, and the smell of roasted chestnuts drifted across the square. Nobody wanted to go home.
"""

TOKENIZER_CASES = [
    "",
    "Hello, world!",
    "The quick brown fox jumps over the lazy dog.",
    "café — naïve 日本",
    "   leading spaces and  double  spaces",
    "line one\nline two\n\nline four\n",
    "Numbers: 0 1 42 365.25 3.14159 2024-11-22 10:30",
    "She opened the envelope carefully and read the three lines written in blue ink, "
    "then, after a long pause, she folded the paper twice, put it in her pocket, and walked "
    "out into the rain without saying a word to anyone (not even to the dog).",
    "\ttabs\tand \"quotes\" and 'apostrophes' -- don't stop!",
]

ROW0_TEXT = (
    "The keeper climbed the steps of the old lighthouse at six o'clock, lit the lamp, and watched "
    "the boats return one by one while the wind came in from the west and the gulls complained "
    "about the weather."
)

# --------------------------------------------------------------------------------------------
# Tokenizer
# --------------------------------------------------------------------------------------------


def build_tokenizer(out_dir: Path) -> PreTrainedTokenizerFast:
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB,
        min_frequency=2,
        special_tokens=["<s>", "</s>", "<pad>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(TRAIN_TEXT.splitlines(keepends=True), trainer=trainer)
    assert tok.get_vocab_size() == VOCAB, tok.get_vocab_size()
    assert [tok.token_to_id(t) for t in ("<s>", "</s>", "<pad>")] == [BOS, EOS, PAD]
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A",
        pair="<s> $A <s> $B",
        special_tokens=[("<s>", BOS)],
    )
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<s>",
        eos_token="</s>",
        pad_token="<pad>",
        clean_up_tokenization_spaces=False,
    )
    if out_dir.exists():
        shutil.rmtree(out_dir)
    out_dir.mkdir(parents=True)
    save_tokenizer(fast, out_dir)
    # Re-load exactly as a user (or check_hf_roundtrip.py) would.
    return AutoTokenizer.from_pretrained(out_dir)


def save_tokenizer(tok, out_dir: Path) -> None:
    tok.save_pretrained(out_dir)
    # transformers 5 writes tokenizer_class "TokenizersBackend", which transformers 4 cannot load;
    # "PreTrainedTokenizerFast" means the same thing to both (v5 aliases it to TokenizersBackend).
    p = out_dir / "tokenizer_config.json"
    cfg = json.loads(p.read_text())
    cfg["tokenizer_class"] = "PreTrainedTokenizerFast"
    write_json(p, cfg)


def write_tokenizer_reference(tok, out_dir: Path) -> None:
    cases = []
    for text in TOKENIZER_CASES:
        ids = tok(text)["input_ids"]
        assert ids[0] == BOS, (text, ids)
        cases.append({"text": text, "ids": ids, "decoded": tok.decode(ids, skip_special_tokens=True)})
    ref = {
        "transformers_version": transformers.__version__,
        "note": "ids = tok(text)['input_ids'] (add_special_tokens=True: BOS <s>=0 prepended); "
        "decoded = tok.decode(ids, skip_special_tokens=True) with clean_up_tokenization_spaces=False",
        "cases": cases,
    }
    write_json(out_dir / "reference.json", ref)


# --------------------------------------------------------------------------------------------
# Model variants
# --------------------------------------------------------------------------------------------

COMMON = dict(
    vocab_size=VOCAB,
    hidden_size=64,
    num_hidden_layers=2,
    intermediate_size=128,
    num_attention_heads=4,
    rms_norm_eps=1e-5,
    max_position_embeddings=128,
    bos_token_id=BOS,
    eos_token_id=EOS,
    pad_token_id=PAD,
    hidden_act="silu",
)


def rope(rope_type: str = "default", theta: float = 10000.0, **extra) -> dict:
    """RoPE parameters in the form this transformers version wants as a constructor argument."""
    d = {"rope_type": rope_type, **extra}
    if TF_MAJOR >= 5:
        d["rope_theta"] = theta
        return {"rope_parameters": d}
    if rope_type == "default":
        return {"rope_theta": theta}
    d["type"] = rope_type
    return {"rope_theta": theta, "rope_scaling": d}


def phi3_head_half() -> int:
    return (64 // 4) // 2  # head_dim 16 -> 8 rotary frequency pairs


VARIANTS = {
    "llama_gqa": dict(
        cls=LlamaConfig,
        seed=1001,
        dtype=torch.float32,
        cfg=dict(num_key_value_heads=2, tie_word_embeddings=False, **rope(theta=10000.0)),
    ),
    "llama_tied_bf16": dict(
        cls=LlamaConfig,
        seed=1002,
        dtype=torch.bfloat16,
        cfg=dict(
            num_key_value_heads=4,
            tie_word_embeddings=True,
            head_dim=32,
            attention_bias=True,
            mlp_bias=True,
            **rope(theta=10000.0),
        ),
    ),
    "llama3_rope": dict(
        cls=LlamaConfig,
        seed=1003,
        dtype=torch.float32,
        cfg=dict(
            num_key_value_heads=2,
            tie_word_embeddings=False,
            **rope(
                "llama3",
                theta=500000.0,
                factor=8.0,
                low_freq_factor=1.0,
                high_freq_factor=4.0,
                # 64 (not 16) so that the 8 frequencies of head_dim 16 hit all three llama3 branches:
                # wavelen 6.3 < 64/4 kept, 32.5 in [16, 64] smoothed, >= 167 > 64 divided by factor.
                original_max_position_embeddings=64,
            ),
        ),
    ),
    "llama_linear_v4": dict(
        cls=LlamaConfig,
        seed=1004,
        dtype=torch.float16,
        cfg=dict(num_key_value_heads=4, tie_word_embeddings=False, **rope("linear", theta=10000.0, factor=2.0)),
        rewrite="v4",
    ),
    "mistral_sharded": dict(
        cls=MistralConfig,
        seed=1005,
        dtype=torch.float16,
        cfg=dict(num_key_value_heads=2, tie_word_embeddings=False, sliding_window=16, **rope(theta=10000.0)),
        max_shard_size="80KB",
    ),
    "qwen2_bias": dict(
        cls=Qwen2Config,
        seed=1006,
        dtype=torch.float32,
        cfg=dict(num_key_value_heads=2, tie_word_embeddings=True, use_sliding_window=False, **rope(theta=10000.0)),
    ),
    "phi3_fused": dict(
        cls=Phi3Config,
        seed=1007,
        dtype=torch.float32,
        cfg=dict(
            num_key_value_heads=4,
            tie_word_embeddings=False,
            original_max_position_embeddings=128,
            **rope(theta=10000.0, partial_rotary_factor=0.5),
        ),
    ),
    "phi3_longrope": dict(
        cls=Phi3Config,
        seed=1008,
        dtype=torch.float32,
        cfg=dict(
            num_key_value_heads=4,
            tie_word_embeddings=False,
            original_max_position_embeddings=16,
            **rope(
                "longrope",
                theta=10000.0,
                short_factor=[round(1.0 + 0.5 * i / (phi3_head_half() - 1), 6) for i in range(phi3_head_half())],
                long_factor=[round(2.0 + 6.0 * i / (phi3_head_half() - 1), 6) for i in range(phi3_head_half())],
            ),
        ),
    ),
}


def reinit_(model: torch.nn.Module, seed: int) -> None:
    """Re-initialise every parameter so outputs are far from uniform and biases are non-zero."""
    gen = torch.Generator().manual_seed(seed)
    done = set()
    for mod_name, mod in sorted(model.named_modules(), key=lambda kv: kv[0]):
        for p_name, p in sorted(mod.named_parameters(recurse=False), key=lambda kv: kv[0]):
            if id(p) in done:
                continue  # tied weight already initialised
            done.add(id(p))
            kind = type(mod).__name__
            with torch.no_grad():
                if isinstance(mod, (torch.nn.Linear, torch.nn.Embedding)) and p_name == "weight":
                    p.copy_(torch.randn(p.shape, generator=gen) * 0.15)
                elif isinstance(mod, torch.nn.Linear) and p_name == "bias":
                    p.copy_(torch.randn(p.shape, generator=gen) * 0.1)
                elif "RMSNorm" in kind and p_name == "weight":
                    p.copy_(1.0 + torch.randn(p.shape, generator=gen) * 0.1)
                else:
                    raise RuntimeError(f"unexpected parameter {mod_name}.{p_name} ({kind})")
    n_params = len({id(p) for p in model.parameters()})
    assert len(done) == n_params, (len(done), n_params)


def load_f32(model_dir: Path, dtype=torch.float32):
    kw = {"dtype": dtype} if TF_MAJOR >= 5 else {"torch_dtype": dtype}
    m = AutoModelForCausalLM.from_pretrained(model_dir, attn_implementation="eager", **kw)
    m.eval()
    return m


@torch.no_grad()
def logits_of(model, ids: torch.Tensor) -> torch.Tensor:
    return model(input_ids=ids, use_cache=False).logits.float()


def make_input_ids(tok, seed: int) -> torch.Tensor:
    row0 = tok(ROW0_TEXT)["input_ids"]
    extra = tok(" " + TRAIN_TEXT)["input_ids"][1:]  # drop the second BOS
    row0 = (row0 + extra)[:SEQ]
    assert len(row0) == SEQ
    gen = torch.Generator().manual_seed(seed)
    row1 = torch.randint(3, VOCAB, (SEQ,), generator=gen)
    return torch.stack([torch.tensor(row0, dtype=torch.int64), row1.to(torch.int64)])


def make_eval_rows(seed: int) -> list[list[int]]:
    gen = torch.Generator().manual_seed(seed)
    rows = []
    for i, n in enumerate((20, 40, 75)):
        r = torch.randint(3, VOCAB, (n,), generator=gen).tolist()
        if i == 0:
            r[0] = BOS
        rows.append(r)
    return rows


@torch.no_grad()
def sliding_nll(model, ids: list[int], max_length: int = 32, stride: int = 16) -> tuple[float, int]:
    """HF perplexity protocol on one sequence: returns (sum of token NLLs, number of scored tokens)."""
    L = len(ids)
    t = torch.tensor(ids, dtype=torch.int64)
    total, count, prev_end = 0.0, 0, 0
    for begin in range(0, L, stride):
        end = min(begin + max_length, L)
        trg_len = end - prev_end
        inp = t[begin:end]
        labels = inp.clone()
        labels[:-trg_len] = -100
        logits = model(input_ids=inp[None], use_cache=False).logits[0].double()
        logp = torch.log_softmax(logits[:-1], dim=-1)
        tgt = labels[1:]
        valid = tgt != -100
        nll = -logp[valid].gather(1, tgt[valid][:, None]).squeeze(1)
        total += nll.sum().item()
        count += int(valid.sum().item())
        prev_end = end
        if end == L:
            break
    return total, count


def nll_summary(model, rows: list[list[int]]) -> dict:
    total, count = 0.0, 0
    for r in rows:
        t, c = sliding_nll(model, r)
        total += t
        count += c
    mean = total / count
    return {"max_length": 32, "stride": 16, "total_nll": total, "tokens": count, "mean_nll": mean, "ppl": math.exp(mean)}


@torch.no_grad()
def greedy_no_cache(model, prompt: list[int], n: int) -> list[int]:
    ids = list(prompt)
    out = []
    for _ in range(n):
        logits = model(input_ids=torch.tensor([ids]), use_cache=False).logits[0, -1]
        nxt = int(torch.argmax(logits).item())
        out.append(nxt)
        ids.append(nxt)
        if nxt == EOS:
            break
    return out


def rewrite_config_v4(model_dir: Path) -> None:
    """Rewrite a transformers-5 config.json into the transformers-4 key form."""
    p = model_dir / "config.json"
    cfg = json.loads(p.read_text())
    if "dtype" in cfg:
        cfg["torch_dtype"] = cfg.pop("dtype")
    rp = cfg.pop("rope_parameters", None)
    if rp is not None:
        rp = dict(rp)
        cfg["rope_theta"] = rp.pop("rope_theta")
        if "partial_rotary_factor" in rp:
            cfg["partial_rotary_factor"] = rp.pop("partial_rotary_factor")
        if rp.get("rope_type", "default") == "default":
            cfg["rope_scaling"] = None
        else:
            cfg["rope_scaling"] = {"type": rp["rope_type"], **rp}
    write_json(p, dict(sorted(cfg.items())))


def rewrite_config_v5(model_dir: Path) -> None:
    """Rewrite a transformers-4 config.json into the transformers-5 key form."""
    p = model_dir / "config.json"
    cfg = json.loads(p.read_text())
    if "torch_dtype" in cfg:
        cfg["dtype"] = cfg.pop("torch_dtype")
    rp = dict(cfg.pop("rope_scaling", None) or {})
    rp.pop("type", None)
    rp.setdefault("rope_type", "default")
    rp["rope_theta"] = cfg.pop("rope_theta", 10000.0)
    cfg["rope_parameters"] = rp
    write_json(p, dict(sorted(cfg.items())))


def write_json(path: Path, obj) -> None:
    text = json.dumps(obj, indent=2, ensure_ascii=False)
    # Keep lists of plain numbers on one line (token id lists, rope factors).
    text = re.sub(
        r"\[\s*(-?[\d.eE+-]+(?:,\s*-?[\d.eE+-]+)*)\s*\]",
        lambda m: "[" + ", ".join(x.strip() for x in m.group(1).split(",")) + "]",
        text,
    )
    path.write_text(text + "\n")


def dir_size(d: Path) -> int:
    return sum(f.stat().st_size for f in d.rglob("*") if f.is_file())


def build_variant(name: str, spec: dict, tok, summary: dict) -> None:
    out = FIXTURES / "models" / name
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    cfg_kwargs = {**COMMON, **spec["cfg"]}
    config = spec["cls"](**cfg_kwargs)
    torch.manual_seed(spec["seed"])
    model = AutoModelForCausalLM.from_config(config, attn_implementation="eager")
    model.eval()
    reinit_(model, spec["seed"])
    model = model.to(spec["dtype"])
    model.generation_config.bos_token_id = BOS
    model.generation_config.eos_token_id = EOS
    model.generation_config.pad_token_id = PAD
    save_kw = {}
    if "max_shard_size" in spec:
        save_kw["max_shard_size"] = spec["max_shard_size"]
    model.save_pretrained(out, **save_kw)
    save_tokenizer(tok, out)
    del model

    info = {"variant": name, "storage_dtype": str(spec["dtype"]).replace("torch.", "")}
    if spec.get("rewrite") == "v4" and TF_MAJOR >= 5:
        before = logits_of(load_f32(out), make_input_ids(tok, spec["seed"]))
        rewrite_config_v4(out)
        after = logits_of(load_f32(out), make_input_ids(tok, spec["seed"]))
        assert torch.equal(before, after), "v4 rewrite changed the model"
    elif spec.get("rewrite") == "v4" or (name == "llama3_rope" and TF_MAJOR < 5):
        rewrite_config_v5(out)

    # Sanity-check config / generation config ids.
    cfg_json = json.loads((out / "config.json").read_text())
    gen_json = json.loads((out / "generation_config.json").read_text())
    for k, v in (("bos_token_id", BOS), ("eos_token_id", EOS), ("pad_token_id", PAD)):
        assert cfg_json.get(k) == v, (name, k, cfg_json.get(k))
        assert gen_json.get(k) == v, (name, k, gen_json.get(k))
    info["config_form"] = "v4" if "torch_dtype" in cfg_json or "rope_theta" in cfg_json else "v5"

    # ---- references, always computed from the SAVED directory ----
    model = load_f32(out)
    ids = make_input_ids(tok, spec["seed"])
    logits = logits_of(model, ids)
    logits_short = logits_of(model, ids[:1, :SHORT])
    # Row-by-row must agree with the batch (no padding anywhere).
    for b in range(ids.shape[0]):
        assert torch.allclose(logits_of(model, ids[b : b + 1]), logits[b : b + 1], atol=1e-5, rtol=0)
    tensors = {"input_ids": ids.contiguous(), "logits": logits.contiguous(), "logits_short": logits_short.contiguous()}
    if spec["dtype"] != torch.float32:
        native = load_f32(out, dtype=spec["dtype"])
        tensors["logits_native"] = logits_of(native, ids).contiguous()
        info["max_abs_native_minus_f32"] = (tensors["logits_native"] - logits).abs().max().item()
        del native
    save_file(tensors, str(out / "reference.safetensors"))

    # Greedy generation with the KV cache, cross-checked against a cache-free loop.
    prompt = ids[0, :8].tolist()
    with torch.no_grad():
        gen_out = model.generate(
            torch.tensor([prompt]),
            attention_mask=torch.ones(1, len(prompt), dtype=torch.int64),
            do_sample=False,
            max_new_tokens=12,
            use_cache=True,
        )
    new_ids = gen_out[0, len(prompt) :].tolist()
    ref_ids = greedy_no_cache(model, prompt, 12)
    assert new_ids == ref_ids, (name, new_ids, ref_ids)

    eval_rows = make_eval_rows(spec["seed"] + 500)
    with open(out / "eval.jsonl", "w") as f:
        for r in eval_rows:
            f.write(json.dumps({"input_ids": r}) + "\n")
    nll = nll_summary(model, eval_rows)
    text_ids = tok((FIXTURES / "eval.txt").read_text())["input_ids"]
    nll_text = nll_summary(model, [text_ids])
    nll_text["text_tokens"] = len(text_ids)

    max_abs = logits.abs().max().item()
    ref = {
        "transformers_version": transformers.__version__,
        "torch_version": torch.__version__,
        "variant": name,
        "storage_dtype": info["storage_dtype"],
        "config_form": info["config_form"],
        "max_abs_logit": max_abs,
        "max_abs_logit_short": logits_short.abs().max().item(),
        "greedy": {"prompt_ids": prompt, "new_ids": new_ids, "stopped_at_eos": EOS in new_ids},
        "nll": nll,
        "nll_text": nll_text,
    }
    if "max_abs_native_minus_f32" in info:
        ref["max_abs_native_minus_f32"] = info["max_abs_native_minus_f32"]

    # Variant-specific checks that the feature under test really matters.
    if name == "mistral_sharded":
        shards = sorted(out.glob("model-*.safetensors"))
        assert len(shards) >= 3 and (out / "model.safetensors.index.json").exists(), shards
        nowin = load_f32(out)
        nowin.config.sliding_window = None
        d = (logits_of(nowin, ids) - logits).abs().max().item()
        d_short = (logits_of(nowin, ids[:1, :SHORT]) - logits_short).abs().max().item()
        assert d > 1e-2, d
        assert d_short < 1e-5, d_short
        ref["check_sliding_window"] = {"max_abs_diff_vs_no_window": d, "short_max_abs_diff_vs_no_window": d_short}
        info["shards"] = len(shards)
    if name == "phi3_fused":
        alt = load_f32(out)
        alt.config.rope_parameters["partial_rotary_factor"] = 1.0
        alt.model.rotary_emb = type(alt.model.rotary_emb)(alt.config)
        d = (logits_of(alt, ids) - logits).abs().max().item()
        assert d > 1e-2, d
        ref["check_partial_rotary"] = {"max_abs_diff_vs_full_rotary": d}
    if name == "phi3_longrope":
        # The short (12-token) run uses short_factor, the 48-token run long_factor, for ALL positions:
        # so the first 12 positions differ between the two runs.
        d = (logits[:1, :SHORT] - logits_short).abs().max().item()
        assert d > 1e-2, d
        ref["check_longrope"] = {"max_abs_diff_first12_long_vs_short": d}
    if name == "llama3_rope":
        alt = load_f32(out)
        alt.config.rope_parameters = {"rope_type": "default", "rope_theta": 500000.0}
        alt.model.rotary_emb = type(alt.model.rotary_emb)(alt.config)
        d = (logits_of(alt, ids) - logits).abs().max().item()
        assert d > 1e-3, d
        inv = 1.0 / (500000.0 ** (torch.arange(0, 16, 2).float() / 16))
        wl = 2 * math.pi / inv
        branches = {"kept": int((wl < 64 / 4.0).sum()), "smoothed": int(((wl >= 16) & (wl <= 64)).sum()),
                    "scaled": int((wl > 64).sum())}
        assert all(v > 0 for v in branches.values()), branches
        ref["check_llama3_scaling"] = {"max_abs_diff_vs_unscaled": d, "frequencies_per_branch": branches}
    write_json(out / "reference.json", ref)

    size = dir_size(out)
    assert size < 1_000_000, (name, size)
    info.update(max_abs_logit=max_abs, size_bytes=size, greedy=new_ids)
    summary[name] = info


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", nargs="*", help="only these model variants")
    args = ap.parse_args()

    torch.set_num_threads(1)  # bitwise reproducibility across machines with different core counts
    torch.use_deterministic_algorithms(True)
    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()

    FIXTURES.mkdir(parents=True, exist_ok=True)
    (FIXTURES / "eval.txt").write_text(EVAL_TEXT)

    tok = build_tokenizer(FIXTURES / "tokenizer")
    write_tokenizer_reference(tok, FIXTURES / "tokenizer")

    summary: dict = {}
    for name, spec in VARIANTS.items():
        if args.only and name not in args.only:
            continue
        build_variant(name, spec, tok, summary)
        print(json.dumps(summary[name]), flush=True)
    print(f"tokenizer dir: {dir_size(FIXTURES / 'tokenizer')} bytes", file=sys.stderr)
    print(f"transformers {transformers.__version__}, torch {torch.__version__}", file=sys.stderr)


if __name__ == "__main__":
    main()

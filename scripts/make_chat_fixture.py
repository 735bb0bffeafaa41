#!/usr/bin/env python3
"""Reference renderings of the shipped teacher's chat template by transformers.

Usage (from the repository root):

    .venv/bin/python scripts/make_chat_fixture.py

Writes tests/fixtures/chat/teacher_chat.json: for each case, the messages, `add_generation_prompt`,
transformers' `apply_chat_template(..., tokenize=False)` text, its token ids
(`apply_chat_template(..., tokenize=True)`, i.e. no special tokens added beyond the template's),
and the number of assistant tokens counted independently of slmc's span logic: each assistant
turn's stripped content followed by the EOS token, tokenized on its own. Deterministic; slmc's
tests (crates/slmc-pipeline/tests/chat_data.rs) assert against it without Python.
"""

from __future__ import annotations

import json
from pathlib import Path

import transformers
from transformers import AutoTokenizer

ROOT = Path(__file__).resolve().parent.parent
MODEL = ROOT / "data" / "models" / "teacher"
OUT = ROOT / "tests" / "fixtures" / "chat" / "teacher_chat.json"

CASES = [
    [
        {"role": "user", "content": "Which work is this passage from?\n\nTo be, or not to be"},
        {"role": "assistant", "content": "Hamlet"},
    ],
    [
        {"role": "system", "content": "  You answer in the words of the plays.  "},
        {"role": "user", "content": "Continue this passage from Macbeth:\nIs this a dagger"},
        {"role": "assistant", "content": "which I see before me,\nThe handle toward my hand?\n"},
        {"role": "user", "content": "And then?"},
        {"role": "assistant", "content": " Come, let me clutch thee. "},
    ],
    [
        {"role": "user", "content": "Say \"hi\" — in one word, café-style: {braces} <|tags|>"},
    ],
]


def main() -> None:
    tok = AutoTokenizer.from_pretrained(MODEL)
    cases = []
    for messages in CASES:
        for gen in (False, True):
            text = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=gen)
            ids = tok.apply_chat_template(messages, tokenize=True, add_generation_prompt=gen, return_dict=True)[
                "input_ids"
            ]
            assistant = sum(
                len(tok(m["content"].strip() + tok.eos_token, add_special_tokens=False)["input_ids"])
                for m in messages
                if m["role"] == "assistant"
            )
            cases.append(
                {
                    "messages": messages,
                    "add_generation_prompt": gen,
                    "text": text,
                    "ids": list(ids),
                    "assistant_tokens": assistant,
                }
            )
    try:
        tok.apply_chat_template([{"role": "tool", "content": "x"}], tokenize=False)
        raise SystemExit("the template should refuse the role `tool`")
    except Exception as e:  # jinja2's TemplateError from raise_exception
        error = str(e)
    OUT.parent.mkdir(parents=True, exist_ok=True)
    # One case per line, so diffs stay readable.
    lines = ",\n  ".join(json.dumps(c, ensure_ascii=False) for c in cases)
    head = json.dumps(transformers.__version__)
    OUT.write_text(
        f'{{"transformers": {head},\n "tool_role_error": {json.dumps(error)},\n "cases": [\n  {lines}\n ]\n}}\n'
    )
    print(f"wrote {OUT} ({len(cases)} cases)")


if __name__ == "__main__":
    main()

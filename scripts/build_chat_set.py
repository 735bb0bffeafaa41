#!/usr/bin/env python3
"""Build the tiny instruction set data/chat/{train,val}.jsonl from the shipped corpus.

Usage (from the repository root):

    .venv/bin/python scripts/build_chat_set.py

Reads data/corpus/{train,val}.parquet (public-domain Shakespeare and Milton, see data/README.md)
and writes conversations in the `{"messages": [{"role", "content"}, ...]}` layout, three kinds,
all answerable from the text itself:

* continue: "Continue this passage from <work>:" + 4 lines -> the next 2 lines;
* which work: "Which work is this passage from?" + 3 lines -> the title, then a second turn
  "Who wrote it?" -> the author (multi-turn, so the loss mask has two assistant turns);
* next line: a system message ("You complete lines of verse and prose.") + 2 lines -> the next line.

Train rows come from the train works, val rows from the held-out works (Macbeth, Twelfth Night,
Paradise Regained), so validation measures continuation of unseen text. Deterministic: one
`random.Random(SEED)`, works in sorted order, rows in file order.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parent.parent
SEED = 11
PER_WORK = {"train": 6, "val": 10}  # examples drawn per work and kind
MILTON = {"areopagitica_gut", "paradise_lost_(no_introduction)_gut", "poemata_gut", "poetical_works_gut",
          "paradise_regained_gut"}
TITLES = {
    "alls_well_that_ends_well_gut": "All's Well That Ends Well",
    "antony_and_cleopatra_gut": "Antony and Cleopatra",
    "areopagitica_gut": "Areopagitica",
    "as_you_like_it_gut": "As You Like It",
    "comedy_of_errors_gut": "The Comedy of Errors",
    "coriolanus_gut": "Coriolanus",
    "cymbeline_gut_f": "Cymbeline",
    "hamlet_gut": "Hamlet",
    "henry_iv_part_1_gut": "Henry IV, Part 1",
    "henry_iv_part_2_gut": "Henry IV, Part 2",
    "henry_v_gut": "Henry V",
    "henry_vi_part_1_gut": "Henry VI, Part 1",
    "henry_vi_part_2_gut": "Henry VI, Part 2",
    "henry_vi_part_3_gut": "Henry VI, Part 3",
    "henry_viii_gut": "Henry VIII",
    "john_gut": "King John",
    "julius_caesar_gut": "Julius Caesar",
    "lear_gut": "King Lear",
    "lovers_complaint_gut": "A Lover's Complaint",
    "loves_labours_lost_gut": "Love's Labour's Lost",
    "measure_for_measure_gut": "Measure for Measure",
    "merchant_of_venice_gut": "The Merchant of Venice",
    "merry_wives_of_windsor_gut": "The Merry Wives of Windsor",
    "midsummer_nights_dream_gut": "A Midsummer Night's Dream",
    "much_ado_about_nothing_gut": "Much Ado About Nothing",
    "othello_gut": "Othello",
    "paradise_lost_(no_introduction)_gut": "Paradise Lost",
    "passionate_pilgrim_gut": "The Passionate Pilgrim",
    "pericles_gut": "Pericles",
    "phoenix_and_the_turtle_gut": "The Phoenix and the Turtle",
    "poemata_gut": "Poemata",
    "poetical_works_gut": "The Poetical Works of John Milton",
    "rape_of_lucrece_gut": "The Rape of Lucrece",
    "richard_ii_gut": "Richard II",
    "richard_iii_gut": "Richard III",
    "romeo_and_juliet_gut": "Romeo and Juliet",
    "sonnets_gut": "The Sonnets",
    "taming_of_the_shrew_gut": "The Taming of the Shrew",
    "tempest_gut": "The Tempest",
    "timon_of_athens_gut": "Timon of Athens",
    "tragedy_of_titus_andronicus_gut": "Titus Andronicus",
    "troilus_and_cressida_gut": "Troilus and Cressida",
    "two_gentlemen_of_verona_gut": "The Two Gentlemen of Verona",
    "winters_tale_gut": "The Winter's Tale",
    "macbeth_gut": "Macbeth",
    "paradise_regained_gut": "Paradise Regained",
    "twelfth_night_gut": "Twelfth Night",
}


def lines_of(text: str) -> list[str]:
    """Non-empty lines of at most 90 characters, stripped (long prose lines make rows too long)."""
    return [s.strip() for s in text.split("\n") if s.strip() and len(s.strip()) <= 90]


def is_heading(line: str) -> bool:
    """Speaker names and stage headings ("CLOWN.", "ACT II. SCENE 1."): all capitals."""
    return line.upper() == line


def window(rng: random.Random, rows: list[list[str]], n: int, answer: int) -> list[str]:
    """`n` consecutive lines from a random row that has enough of them, whose last `answer` lines
    are text rather than headings (so answers are lines of verse or prose)."""
    candidates = [r for r in rows if len(r) >= n]
    while True:
        lines = rng.choice(candidates)
        start = rng.randrange(len(lines) - n + 1)
        w = lines[start:start + n]
        if not any(is_heading(x) for x in w[n - answer:]):
            return w


def examples(rng: random.Random, source: str, rows: list[list[str]], k: int) -> list[dict]:
    title = TITLES[source]
    author = "John Milton" if source in MILTON else "William Shakespeare"
    out = []
    for _ in range(k):
        w = window(rng, rows, 6, 2)
        out.append({"messages": [
            {"role": "user", "content": f"Continue this passage from {title}:\n" + "\n".join(w[:4])},
            {"role": "assistant", "content": "\n".join(w[4:])},
        ]})
        w = window(rng, rows, 3, 0)
        out.append({"messages": [
            {"role": "user", "content": "Which work is this passage from?\n\n" + "\n".join(w)},
            {"role": "assistant", "content": title},
            {"role": "user", "content": "Who wrote it?"},
            {"role": "assistant", "content": author},
        ]})
        w = window(rng, rows, 3, 1)
        out.append({"messages": [
            {"role": "system", "content": "You complete lines of verse and prose."},
            {"role": "user", "content": "\n".join(w[:2])},
            {"role": "assistant", "content": w[2]},
        ]})
    return out


def build(split: str, rng: random.Random) -> list[dict]:
    table = pq.read_table(ROOT / "data" / "corpus" / f"{split}.parquet").to_pylist()
    by_work: dict[str, list[list[str]]] = {}
    for r in table:
        by_work.setdefault(r["source"], []).append(lines_of(r["text"]))
    out = []
    for source in sorted(by_work):
        if sum(len(x) for x in by_work[source]) < 40:
            continue  # too little verse to draw from (e.g. a one-row poem)
        out.extend(examples(rng, source, by_work[source], PER_WORK[split]))
    return out


def main() -> None:
    rng = random.Random(SEED)
    out_dir = ROOT / "data" / "chat"
    out_dir.mkdir(parents=True, exist_ok=True)
    for split in ("train", "val"):
        rows = build(split, rng)
        path = out_dir / f"{split}.jsonl"
        path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
        print(f"{path}: {len(rows)} conversations, {path.stat().st_size} bytes")


if __name__ == "__main__":
    main()

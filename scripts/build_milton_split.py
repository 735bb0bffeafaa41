#!/usr/bin/env python3
"""Write data/milton/{train,val}.parquet: the Milton rows of the shipped corpus (data/corpus), for
the LoRA recipes' task "adapt the teacher to Milton" (recipes/lora.toml, recipes/qlora.toml).

train: Milton's works in data/corpus/train.parquet (Paradise Lost, Areopagitica, the Poemata, the
Poetical Works); val: his work in data/corpus/val.parquet (Paradise Regained), held out from the
teacher's training too. Same schema (text, source), row order and zstd level as the corpus.

    .venv/bin/python scripts/build_milton_split.py
"""
import pathlib

import pyarrow.compute as pc
import pyarrow.parquet as pq

ROOT = pathlib.Path(__file__).resolve().parent.parent
MILTON = {
    "paradise_lost_(no_introduction)_gut",
    "areopagitica_gut",
    "poemata_gut",
    "poetical_works_gut",
    "paradise_regained_gut",
}

out = ROOT / "data" / "milton"
out.mkdir(parents=True, exist_ok=True)
for split in ["train", "val"]:
    table = pq.read_table(ROOT / "data" / "corpus" / f"{split}.parquet")
    keep = pc.is_in(table["source"], value_set=__import__("pyarrow").array(sorted(MILTON)))
    milton = table.filter(keep)
    pq.write_table(milton, out / f"{split}.parquet", compression="zstd", compression_level=19)
    chars = sum(len(s) for s in milton["text"].to_pylist())
    print(f"{split}: {milton.num_rows} rows, {chars} characters, sources {sorted(set(milton['source'].to_pylist()))}")

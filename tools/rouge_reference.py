#!/usr/bin/env python3
"""Reference ROUGE scores and Porter stems from Google's rouge-score package, for Lamina's tests.

Runs the real `rouge_score.rouge_scorer.RougeScorer` (what Hugging Face `evaluate.load("rouge")`
calls) and NLTK's `PorterStemmer()` (default mode NLTK_EXTENSIONS, the stemmer rouge-score uses
with use_stemmer=True) and writes, under --out (default tests/data/rouge/):

  rouge_reference.json  sets of (target, prediction) pairs with rouge-score's precision / recall /
                        fmeasure for rouge1, rouge2, rougeL and rougeLsum, each set scored with
                        use_stemmer False and True; per set the mean fmeasure x 100 and
                        rouge-score's BootstrapAggregator interval (numpy seeded, for reference
                        only: numpy's resampling is not reproduced by Lamina).
  porter_stems.tsv      word<TAB>stem for every distinct rouge token of the CNN/DailyMail sample
                        plus synthetic words built from the algorithm's suffixes.
  target.txt, prediction.txt, delimited.txt, pyrouge_files/*_multi.0.txt
                        verbatim copies of the upstream rouge-score test inputs (from --shared).

Sets (targets are the reference side, rouge-score's score(target, prediction)):
  upstream_lines   line i of target.txt vs line i of prediction.txt, read with readlines()
                   (so each keeps its trailing "\\n"), as upstream's rouge_scorer_test does.
  upstream_multi   pyrouge_files/target_multi.0.txt vs prediction_multi.0.txt (whole files, several
                   lines each: the rougeLsum test), and delimited.txt in a few arrangements.
  cnn_lead3        CNN/DailyMail test rows 0..99: highlights vs the article's first three sentences
                   (split after . ! or ? followed by a space), joined with "\\n".
  cnn_reordered    rows 0..99: highlights vs the highlight lines in reverse order plus the article's
                   first sentence, joined with "\\n" (high overlap; rougeLsum differs from rougeL).
  edge             empty and punctuation-only texts, clipping, Unicode case folding, upstream's
                   unit-test strings, stemmer corner words.
The upstream and edge sets also record rouge-score's tokens of each text ("tokens").

Usage:  python3 tools/rouge_reference.py [--shared /work/shared/data] [--out tests/data/rouge]
Needs:  pip install rouge-score==0.1.2 nltk numpy   (versions used are recorded in the outputs)
"""

import argparse
import importlib.metadata
import itertools
import json
import os
import platform
import re
import shutil
import sys

import numpy as np
from nltk.stem import porter
from rouge_score import rouge_scorer, scoring, tokenizers

ROUGE_TYPES = ["rouge1", "rouge2", "rougeL", "rougeLsum"]
N_CNN = 100
BOOTSTRAP_SEED = 20240607
UPSTREAM_FILES = [
    "target.txt",
    "prediction.txt",
    "delimited.txt",
    "pyrouge_files/target_multi.0.txt",
    "pyrouge_files/prediction_multi.0.txt",
]

# Inputs only: every expected number comes from rouge-score.
EDGE_PAIRS = [
    ("", ""),
    ("testing one two", ""),
    ("", "testing one two"),
    ("...", "?!"),
    ("w1 w2 w3 w4 w5", "/"),
    ("   \t  ", "a"),
    ("\n\n\n", "\n"),
    ("\n\nthe cat\n\n", "the cat\n\n\n"),
    ("a", "a"),
    ("the the the the", "the"),
    ("the", "the the the the"),
    ("the cat the cat the cat", "the cat the dog the cat the cat"),
    ("testing one two", "testing"),
    ("testing one two", "testing one"),
    ("testing one two", "testing two"),
    ("first text", "text first"),
    ("w1 w2 w3 w4 w5", "w1 w2 w6 w7 w8\nw1 w3 w8 w9 w5"),
    ("First sentence.\nSecond Sentence.", "Second sentence.\nFirst Sentence."),
    ("First sentence. Second Sentence.", "Second sentence. First Sentence."),
    ("a b c d e\nb c d e a\nc d e a b", "e d c b a\na b c d e"),
    ("x y x y x\ny x y", "y x\nx y x y y x\nx"),
    ("The U.S. economy grew 3.5% in Q2-2014; GDP=$17,000,000,000.", "US economy grew 3 5 percent in q2 2014"),
    ("Don't stop-believing: it's the 1980's!", "dont stop believing its the 1980 s"),
    ("\u0130stanbul is in T\u00fcrkiye", "i stanbul is in t rkiye"),
    ("5\u212a run, 10\u212a RUN", "5k run 10k run"),
    ("Caf\u00e9 na\u00efve \u00e9t\u00e9 stra\u00dfe \ufb01nal \u00c6sir", "caf na ve t stra e nal sir"),
    ("\u201cQuoted\u201d \u2014 words\u2026 and \u00bd emoji \U0001F600 here", "quoted words and emoji here"),
    ("Tabs\tand\r\nwindows\r\nlines", "tabs and windows lines"),
    ("news skies dying lying tying innings outings cannings howe proceed exceed succeed",
     "news sky die lie tie inning outing canning howe proceeded exceeding succeeds"),
    ("generalization relational conditional hopefulness electricity communism",
     "general relate condition hope electric commune"),
    ("running runs runner ran easily fairly cats caresses ponies ties",
     "run run run run easy fair cat caress pony tie"),
    ("yyyy syzygy toy enjoy happy sky spy", "yyy syzygi toi enjoi happi ski spi"),
    ("ABC abc AbC aBc", "abc"),
    ("123 456 123", "123 123 789"),
    ("one:two:three:four:", "one two three four"),
]


def versions():
    out = {"python": platform.python_version(), "platform": platform.platform()}
    for pkg in ["rouge-score", "nltk", "numpy", "absl-py", "six"]:
        out[pkg] = importlib.metadata.version(pkg)
    return out


def read_text(path):
    # newline="" keeps the bytes as they are ("\r" included), like reading the file in binary.
    with open(path, encoding="utf-8", newline="") as f:
        return f.read()


def first_sentences(article, n):
    sents = re.split(r"(?<=[.!?])\s+", article.strip())
    return [s for s in sents if s][:n]


def score_set(name, source, pairs, with_tokens=False):
    """Scores (target, prediction) pairs with use_stemmer False ("plain") and True ("stemmed").

    with_tokens also records rouge-score's tokens of both texts: {"plain": [target, prediction], ...}.
    """
    cases = [{"target": t, "prediction": p, "plain": {}, "stemmed": {}} for t, p in pairs]
    record = {"name": name, "source": source, "cases": cases,
              "mean_fmeasure_x100": {}, "bootstrap_fmeasure_x100": {}}
    for key, use_stemmer in (("plain", False), ("stemmed", True)):
        scorer = rouge_scorer.RougeScorer(ROUGE_TYPES, use_stemmer=use_stemmer)
        aggregator = scoring.BootstrapAggregator()
        for case in cases:
            result = scorer.score(case["target"], case["prediction"])
            aggregator.add_scores(result)
            case[key] = {t: [float(result[t].precision), float(result[t].recall), float(result[t].fmeasure)]
                         for t in ROUGE_TYPES}
            if with_tokens:
                tokenizer = tokenizers.DefaultTokenizer(use_stemmer=use_stemmer)
                case.setdefault("tokens", {})[key] = [tokenizer.tokenize(case["target"]),
                                                      tokenizer.tokenize(case["prediction"])]
        record["mean_fmeasure_x100"][key] = {
            t: 100.0 * float(np.mean([c[key][t][2] for c in cases])) for t in ROUGE_TYPES}
        np.random.seed(BOOTSTRAP_SEED)
        agg = aggregator.aggregate()
        record["bootstrap_fmeasure_x100"][key] = {
            t: [100.0 * float(agg[t].low.fmeasure), 100.0 * float(agg[t].mid.fmeasure),
                100.0 * float(agg[t].high.fmeasure)] for t in ROUGE_TYPES}
    return record


def write_json(path, doc):
    """Indented JSON with one case per line (readable diffs, a fraction of json.dump(indent=1)'s size)."""
    with open(path, "w", encoding="utf-8") as f:
        f.write("{\n")
        for key in ("generated_by", "versions", "notes"):
            f.write(f" {json.dumps(key)}: {json.dumps(doc[key], ensure_ascii=False)},\n")
        f.write(' "sets": [\n')
        for i, s in enumerate(doc["sets"]):
            f.write("  {\n")
            for key in ("name", "source", "mean_fmeasure_x100", "bootstrap_fmeasure_x100"):
                f.write(f"   {json.dumps(key)}: {json.dumps(s[key], ensure_ascii=False)},\n")
            f.write('   "cases": [\n')
            f.write(",\n".join("    " + json.dumps(c, ensure_ascii=False) for c in s["cases"]))
            f.write("\n   ]\n  }" + ("," if i + 1 < len(doc["sets"]) else "") + "\n")
        f.write(" ]\n}\n")


def stem_words(cnn_rows):
    words = set()
    for row in cnn_rows:
        for field in ("article", "highlights"):
            words.update(tokenizers.DefaultTokenizer(use_stemmer=False).tokenize(row[field]))
    # Synthetic words: stems of different measures and shapes (y as vowel/consonant, double consonants,
    # cvc endings, digits) times every suffix a Porter step looks at.
    stems = ["", "b", "tr", "bat", "troubl", "oat", "y", "sy", "by", "toy", "happ", "hop", "fil", "sk", "d",
             "agr", "plaster", "motor", "s", "conflat", "siz", "fizz", "tann", "fall", "hiss", "ceas", "rat",
             "control", "ro", "gener", "electr", "form", "geo", "arch", "ab", "xy", "w", "ow", "yy", "2y",
             "a1", "sensib", "digit", "hesit", "val", "radic", "vietnam", "feud", "decis", "call", "analog",
             "relat", "condit", "predic", "oper", "e", "ee", "ea", "aa", "bee", "ski", "spi", "fl", "ti"]
    suffixes = ["", "s", "ss", "sses", "ies", "ied", "ed", "eed", "ing", "ings", "y", "ly", "e", "ll", "at",
                "bl", "iz", "ational", "tional", "enci", "anci", "izer", "bli", "abli", "alli", "entli", "eli",
                "ousli", "ization", "ation", "ator", "alism", "iveness", "fulness", "ousness", "aliti",
                "iviti", "biliti", "fulli", "logi", "icate", "ative", "alize", "iciti", "ical", "ful",
                "ness", "al", "ance", "ence", "er", "ic", "able", "ible", "ant", "ement", "ment", "ent",
                "sion", "tion", "ion", "ou", "ism", "ate", "iti", "ous", "ive", "ize", "alli" + "ng",
                "ations", "izers", "ousnesses", "fully", "ically", "ements", "ingly", "edly"]
    words.update(a + b for a, b in itertools.product(stems, suffixes) if a + b)
    words.update(["news", "sky", "skies", "dying", "lying", "tying", "innings", "inning", "outings",
                  "outing", "cannings", "canning", "howe", "proceed", "exceed", "succeed", "y" * 9, "yay",
                  "ies", "ied", "dies", "died", "lies", "eed", "feed", "agreed", "bled", "sing"])
    stemmer = porter.PorterStemmer()
    return [(w, stemmer.stem(w)) for w in sorted(words)]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shared", default="/work/shared/data")
    ap.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "..", "tests", "data", "rouge"))
    args = ap.parse_args()
    rouge_dir = os.path.join(args.shared, "rouge")
    out = os.path.normpath(args.out)
    os.makedirs(os.path.join(out, "pyrouge_files"), exist_ok=True)
    for rel in UPSTREAM_FILES:
        shutil.copyfile(os.path.join(rouge_dir, rel), os.path.join(out, rel))

    # Upstream test inputs, read as upstream's tests read them.
    with open(os.path.join(rouge_dir, "target.txt"), encoding="utf-8") as f:
        targets = f.readlines()
    with open(os.path.join(rouge_dir, "prediction.txt"), encoding="utf-8") as f:
        predictions = f.readlines()
    assert len(targets) == len(predictions) == 2
    multi_target = read_text(os.path.join(rouge_dir, "pyrouge_files", "target_multi.0.txt"))
    multi_prediction = read_text(os.path.join(rouge_dir, "pyrouge_files", "prediction_multi.0.txt"))
    delimited = read_text(os.path.join(rouge_dir, "delimited.txt"))
    fields = [x for x in delimited.split(":") if x]

    with open(os.path.join(args.shared, "cnn_dailymail", "test.jsonl"), encoding="utf-8") as f:
        cnn_rows = [json.loads(line) for line in f]
    rows = cnn_rows[:N_CNN]
    lead3 = [(r["highlights"], "\n".join(first_sentences(r["article"], 3))) for r in rows]
    reordered = [(r["highlights"], "\n".join(r["highlights"].split("\n")[::-1] + first_sentences(r["article"], 1)))
                 for r in rows]

    sets = [
        score_set("upstream_lines", "target.txt / prediction.txt, line i each (readlines)",
                  list(zip(targets, predictions)), with_tokens=True),
        score_set("upstream_multi",
                  "pyrouge_files/target_multi.0.txt vs prediction_multi.0.txt; delimited.txt arrangements",
                  [(multi_target, multi_prediction), (multi_prediction, multi_target),
                   (multi_target, multi_target.replace("\n", " ")),
                   (delimited, "\n".join(fields)), ("\n".join(fields), "\n".join(fields[::-1])),
                   (delimited, ":".join(fields[::-1]))], with_tokens=True),
        score_set("cnn_lead3", f"cnn_dailymail/test.jsonl rows 0..{N_CNN - 1}: highlights vs lead-3 joined by \\n",
                  lead3),
        score_set("cnn_reordered",
                  f"cnn_dailymail/test.jsonl rows 0..{N_CNN - 1}: highlights vs reversed highlight lines + lead-1",
                  reordered),
        score_set("edge", "hand-written inputs in tools/rouge_reference.py (EDGE_PAIRS)", EDGE_PAIRS, with_tokens=True),
    ]

    command = "python3 tools/rouge_reference.py " + " ".join(sys.argv[1:])
    doc = {
        "generated_by": command.strip(),
        "versions": versions(),
        "notes": "score(target, prediction) of rouge_score.rouge_scorer.RougeScorer(['rouge1','rouge2','rougeL',"
                 "'rougeLsum'], use_stemmer=...), default tokenizer, split_summaries=False. Each score is "
                 "[precision, recall, fmeasure]. mean_fmeasure_x100 = 100 * numpy.mean of the fmeasures. "
                 f"bootstrap_fmeasure_x100 = [low, mid, high] of scoring.BootstrapAggregator() (1000 samples, 95%) "
                 f"after numpy.random.seed({BOOTSTRAP_SEED}); what HF evaluate reports with use_aggregator=True "
                 "is the mid.",
        "sets": sets,
    }
    write_json(os.path.join(out, "rouge_reference.json"), doc)

    stems = stem_words(cnn_rows)
    with open(os.path.join(out, "porter_stems.tsv"), "w", encoding="utf-8", newline="\n") as f:
        f.write(f"# word<TAB>stem from nltk.stem.porter.PorterStemmer() (mode NLTK_EXTENSIONS), {len(stems)} words\n")
        f.write(f"# generated by: {command.strip()}\n")
        f.write(f"# versions: {json.dumps(versions())}\n")
        for w, s in stems:
            f.write(f"{w}\t{s}\n")
    n_pairs = sum(len(s["cases"]) for s in sets)
    print(f"wrote {out}: {len(sets)} sets, {n_pairs} pairs x 2 stemmer settings, {len(stems)} stems")


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Reference scores for the evaluation metrics (tests/test_metrics.cpp) and the
Unicode tables behind their tokenizers (include/nextquill/eval/text_tables.hpp).

    python3 tools/make_metric_fixtures.py                 # writes tests/fixtures/metrics/
    python3 tools/make_metric_fixtures.py --tables        # rewrites text_tables.hpp
    python3 tools/make_metric_fixtures.py --check-tables  # exit 1 if the header is stale

Needs (fixture): rouge-score, sacrebleu, nltk (which brings `regex`), and the
WordNet 3.0 dictionary files of Debian's `wordnet-base` package in
/usr/share/wordnet (or --wordnet DIR). Nothing is downloaded: nltk's WordNet
reader is pointed at a temporary copy of the Debian files (nltk's reader also
wants a `lexnames` file, which Debian does not ship; lexicographer-file names
play no part in METEOR, so numbered placeholders are written).

What each reference is (the C++ side must equal it within 1e-6):
  rouge1 / rougeL   rouge_score.rouge_scorer.RougeScorer(["rouge1", "rougeL"],
                    use_stemmer=False).score(reference, prediction): precision,
                    recall, F-measure per pair, and their plain means.
  bleu              sacrebleu.corpus_bleu(hyps, [refs]) (13a, exp smoothing,
                    no effective order): score, counts, totals, lengths; and
                    sacrebleu.sentence_bleu(hyp, [ref]) per pair (its defaults:
                    exp smoothing, effective order).
  meteor            nltk.translate.meteor_score.single_meteor_score(
                    word_tokenize(ref, preserve_line=True),
                    word_tokenize(hyp, preserve_line=True), wordnet=<Debian WordNet>)
                    per pair (alpha 0.9, beta 3, gamma 0.5) and the mean; also
                    with a WordNet that has no synsets ("meteor_nowordnet").
                    Hugging Face `evaluate`'s meteor calls word_tokenize without
                    preserve_line, i.e. splits sentences with Punkt first; Punkt's
                    trained model (nltk_data punkt_tab) is data that is not here,
                    so the reference is the Treebank-style NLTKWordTokenizer on
                    the whole line. They differ only where a line holds several
                    sentences ("Fix x. Add y": Punkt would also split off "x"'s
                    period).
Also stored, to test the pieces alone: the 13a and NLTK tokens of every text,
Porter stems (NLTK_EXTENSIONS) of a word list, WordNet synonym sets (as METEOR
builds them) of a word list, and Python str.lower() of some strings.

Texts: targets of shared/data/gitcommits/test.jsonl against other users'
targets, the same user's history items, perturbed copies (dropped, swapped,
repeated words, case, punctuation, synonyms, inflections), empty strings, and
hand-made and random hard cases (Unicode, numbers, quotes, contractions, HTML
entities, whitespace of every kind). Seeded; reruns give identical files.

--tables: enumerates every code point in this Python (str.lower, str.isspace)
and in the `regex` module nltk's tokenizer runs on (\\w, \\d), plus stdlib `re`'s
\\w (nltk's contraction patterns use `re`), and writes them as run tables.
"""
import argparse
import json
import os
import random
import re
import shutil
import sys
import tempfile
import unicodedata
import warnings

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TABLES_OUT = os.path.join(REPO_ROOT, "include", "nextquill", "eval", "text_tables.hpp")
FIXTURE_OUT = os.path.join(REPO_ROOT, "tests", "fixtures", "metrics")
DATA_DIR = os.path.join(os.path.dirname(REPO_ROOT), "shared", "data")

# --------------------------------------------------------------------------
# Unicode tables
# --------------------------------------------------------------------------

RX_WORD, RX_DIGIT, RE_WORD, CASE_IGNORABLE, CASED = 1, 2, 4, 8, 16


def final_sigma_class(ch):
    """Python's str.lower() puts U+03A3 into its Final_Sigma context by scanning
    over case-ignorable characters for a cased one. The properties are not
    exposed, so they are read off lower() itself: 0 = neither, CASE_IGNORABLE,
    or CASED (cased and not case-ignorable; an ignorable character is skipped
    whether or not it is cased)."""
    if ch == "\u03a3":
        return CASED  # Sigma is cased and not case-ignorable
    t1 = ("A" + ch + "\u03a3").lower()[-1] == "\u03c2"
    t2 = (ch + "\u03a3").lower()[-1] == "\u03c2"
    if t2:
        return CASED
    return CASE_IGNORABLE if t1 else 0


def build_tables():
    import regex

    rx_w, rx_d, re_w = regex.compile(r"\w"), regex.compile(r"\d"), re.compile(r"\w")
    props = []
    lower = []
    for c in range(0x110000):
        ch = chr(c)
        p = 0
        if rx_w.match(ch):
            p |= RX_WORD
        if rx_d.match(ch):
            p |= RX_DIGIT
        if re_w.match(ch):
            p |= RE_WORD
        p |= final_sigma_class(ch)
        props.append(p)
        lo = ch.lower()
        if len(lo) == 1 and lo != ch:
            lower.append((c, ord(lo) - c))
    # Property runs: (first, props) whenever props change.
    prop_runs = []
    for c, p in enumerate(props):
        if not prop_runs or prop_runs[-1][1] != p:
            prop_runs.append((c, p))
    # Lower-case runs: equal delta at stride 1 or 2.
    lower_runs = []  # [first, last, delta, stride]
    for c, d in lower:
        if lower_runs:
            r = lower_runs[-1]
            if r[2] == d and r[0] == r[1] and c - r[1] in (1, 2):
                r[1], r[3] = c, c - r[1]
                continue
            if r[2] == d and r[0] != r[1] and c - r[1] == r[3]:
                r[1] = c
                continue
        lower_runs.append([c, c, d, 1])
    multi = {c: chr(c).lower() for c in range(0x110000) if len(chr(c).lower()) != 1}
    return prop_runs, lower_runs, multi


def render_tables():
    import regex

    prop_runs, lower_runs, multi = build_tables()
    if multi != {0x130: "i\u0307"}:
        sys.exit(f"unexpected multi-character lower-case mappings: {multi}")
    lines = [
        "#pragma once",
        "// Generated by tools/make_metric_fixtures.py --tables; do not edit by hand.",
        f"// Source: Python {sys.version.split()[0]} (unicodedata {unicodedata.unidata_version}) str.lower(),",
        f"// stdlib `re` and the `regex` module {regex.__version__}, every code point enumerated.",
        "#include <cstdint>",
        "",
        "namespace nq::eval::text::tables {",
        "",
        "// Property bits of a code point.",
        "enum : uint8_t {",
        "  kRxWord = 1,         // \\w of the `regex` module (nltk's tokenizer patterns)",
        "  kRxDigit = 2,        // \\d of the `regex` module",
        "  kReWord = 4,         // \\w of stdlib `re` (nltk's contraction patterns)",
        "  kCaseIgnorable = 8,  // skipped by str.lower()'s Final_Sigma scan",
        "  kCased = 16,         // cased and not case-ignorable (ends that scan)",
        "};",
        "",
        "// props[c] = kProps[i].props for the last i with kProps[i].first <= c.",
        "struct PropRun {",
        "  uint32_t first;",
        "  uint8_t props;",
        "};",
        "",
        "// str.lower() of single code points, except U+0130 (-> U+0069 U+0307) and the",
        "// Final_Sigma rule: c in [first, last] with (c - first) % stride == 0 maps to c + delta.",
        "struct LowerRun {",
        "  uint32_t first, last;",
        "  int32_t delta;",
        "  uint32_t stride;",
        "};",
        "",
        f"inline constexpr uint32_t kNumPropRuns = {len(prop_runs)};",
        f"inline constexpr uint32_t kNumLowerRuns = {len(lower_runs)};",
        "// clang-format off",
        "inline constexpr PropRun kProps[kNumPropRuns] = {",
    ]
    items = [f"{{0x{c:X},{p}}}" for c, p in prop_runs]
    for i in range(0, len(items), 9):
        lines.append("    " + ", ".join(items[i : i + 9]) + ",")
    lines.append("};")
    lines.append("inline constexpr LowerRun kLower[kNumLowerRuns] = {")
    items = [f"{{0x{a:X},0x{b:X},{d},{s}}}" for a, b, d, s in lower_runs]
    for i in range(0, len(items), 5):
        lines.append("    " + ", ".join(items[i : i + 5]) + ",")
    lines.append("};")
    lines.append("// clang-format on")
    lines.append("")
    lines.append("}  // namespace nq::eval::text::tables")
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------
# Fixture texts
# --------------------------------------------------------------------------

SYNONYMS = [
    ("fix", "repair"), ("fix", "mend"), ("remove", "delete"), ("add", "append"), ("use", "employ"),
    ("change", "alter"), ("update", "change"), ("make", "create"), ("allow", "permit"),
    ("show", "display"), ("error", "mistake"), ("begin", "start"), ("stop", "halt"),
    ("big", "large"), ("small", "little"), ("quick", "fast"), ("help", "aid"), ("test", "trial"),
    ("check", "verify"), ("handle", "manage"), ("speed", "velocity"), ("teach", "instruct"),
    ("clean", "clear"), ("drop", "fall"), ("avoid", "prevent"), ("die", "perish"),
    ("simplify", "streamline"), ("document", "record"), ("rename", "call"), ("option", "choice"),
]

INFLECT = [
    ("fix", "fixes"), ("fix", "fixed"), ("fix", "fixing"), ("add", "adds"), ("add", "added"),
    ("test", "tests"), ("test", "testing"), ("use", "using"), ("make", "makes"), ("remove", "removed"),
    ("remove", "removing"), ("allow", "allows"), ("update", "updated"), ("update", "updates"),
    ("teach", "teaches"), ("do", "does"), ("handle", "handling"), ("avoid", "avoids"),
]

HAND = [
    ("", ""), ("", "fix the build"), ("fix the build", ""), ("   ", "a"), ("a", "a"), ("a", "b"),
    ("the the the the", "the cat"), ("the cat sat on the mat", "the cat sat on the mat"),
    ("the cat sat on the mat", "on the mat sat the cat"),
    ("It is a guide to action which ensures that the military always obeys the commands of the party",
     "It is a guide to action that ensures that the military will forever heed Party commands"),
    ("It is to insure the troops forever hearing the activity guidebook that party direct",
     "It is the guiding principle which guarantees the military forces always being under the command of the Party"),
    ("repair the broken build", "fix broken builds"), ("Fix the crash.", "fix a crash"),
    ("mend a leak", "repair leaks"), ("remove dead code", "delete unused code"),
    ("Don't use can't", "do not use cannot"), ("I'm gonna fix it, y'all", "i am going to fix it"),
    ("'Tis the season", "'twas the night"), ("wanna gimme lemme gotta", "want to give me let me got to"),
    ("\"quoted\" text", "``quoted'' text"), ("a 'single' quote", "a ‘single’ quote"),
    ("«guillemets» and „low“", "guillemets and low"), ("rock 'n' roll", "rock and roll"),
    ("The dog's bone", "the dogs bone"), ("they'll we're I've you'd", "THEY'LL WE'RE I'VE YOU'D"),
    ("Version 3.14 released", "version 3.14 is released"), ("1,000,000 rows", "1000000 rows"),
    ("v2.0-rc1 to v2.1-rc2", "v2.0 - rc1 to v2.1"), ("5-10 items", "5 - 10 items"),
    ("x86-64, arm64: and ppc", "x86-64 , arm64 : and ppc"), ("a:b,c;d", "a : b , c ; d"),
    ("end with colon:", "end with comma,"), ("wait... what?!", "wait ... what ? !"),
    ("e.g. i.e. etc.", "e.g. i.e. etc"), ("U.S.A. and U.K.", "USA and UK"), ("Mr. Smith.", "Mr Smith"),
    ("(parens) [brackets] {braces} <angles>", "parens brackets braces angles"),
    ("a--b --- c", "a -- b"), ("em—dash en–dash", "em - dash en - dash"), ("*bold* and _under_", "bold and under"),
    ("AT&T &amp; &quot;x&quot; &lt;y&gt;", "AT&T & \"x\" <y>"), ("<skipped> text", "text"),
    ("line one\nline two", "line one line two"), ("hyphen-\nated", "hyphenated"), ("tab\tseparated\twords", "tab separated words"),
    ("trailing space   ", "trailing space"), ("  leading", "leading"), ("a\u00a0nbsp\u3000ideographic", "a nbsp ideographic"),
    ("sep\x1cfile\x1dgroup", "sep file group"), ("zero\u200bwidth", "zero width"),
    ("Café crème brûlée", "cafe creme brulee"), ("CAFÉ", "café"), ("naïve coöperation", "naive cooperation"),
    ("ΟΔΟΣ ΣΟΦΟΣ", "οδος σοφος"), ("ΣΑΣ Σ.", "σας σ."), ("İstanbul İİ", "istanbul"), ("\u212aelvin 5\u212a", "kelvin 5k"),
    ("Straße STRASSE", "strasse"), ("ﬁx ﬂow", "fix flow"), ("日本語のテキスト", "日本語 の テキスト"),
    ("emoji 🎉 party 🎉", "emoji party"), ("👍🏽 thumbs", "thumbs"), ("e\u0301 combining", "é combining"),
    ("١٢٣ arabic digits", "123 arabic digits"), ("x² + y²", "x2 + y2"), ("Ⅻ roman", "xii roman"),
    ("repeat repeat repeat repeat repeat", "repeat"), ("a b c d e f g h", "h g f e d c b a"),
    ("a b a b a b", "b a b a"), ("foo foo bar", "foo bar bar"), ("...", "..."), ("?", "!"), ("'", "'"),
    ("\"", "''"), ("``", "''"), ("--", "-"), ("&", "&amp;"), ("'s", "s"), ("O'Neil's dog", "ONeil dog"),
    ("running runners ran runs", "run"), ("generously generalization", "generous general"),
    ("happiness happily happy", "happy"), ("relational conditional", "relate condition"),
    ("skies dying lying", "sky die lie"), ("agreed feed bled", "agree feed bleed"),
    ("ties pies cries", "tie pie cry"), ("hopping falling hissing", "hop fall hiss"),
    ("analogousli vileli", "analogous vile"), ("triplicate formative", "triplic form"),
    ("ye yy y yay", "y"), ("caresses ponies", "caress pony"),
    ("t: Fix foo. Add bar", "t: fix foo . add bar"), ("Fix it.  ", "fix it"), ("Fix it.\"", "fix it"),
    ("done.'", "done"), ("ok.)", "ok"), ("end. ", "end"), ("a.b.c.", "a b c"),
    ("Revert \"commit: fix it\"", "revert commit fix it"), ("t1234: use test_cmp", "t1234: use test_cmp"),
    ("builtin/am.c: remove unused variable", "am: drop unused variable"),
]


def perturb(rng, text):
    words = text.split()
    if not words:
        return text
    kind = rng.randrange(9)
    w = list(words)
    if kind == 0 and len(w) > 1:
        del w[rng.randrange(len(w))]
    elif kind == 1 and len(w) > 1:
        i, j = rng.randrange(len(w)), rng.randrange(len(w))
        w[i], w[j] = w[j], w[i]
    elif kind == 2:
        i = rng.randrange(len(w))
        w.insert(i, w[i])
    elif kind == 3:
        return text.upper() if rng.random() < 0.5 else text.lower()
    elif kind == 4:
        return text.rstrip(".") + rng.choice([".", "!", " .", "...", ",", ":", ";", "?"])
    elif kind == 5:
        out = []
        for x in w:
            lx = x.lower().strip(":,.")
            subs = [b for a, b in SYNONYMS if a == lx] + [a for a, b in SYNONYMS if b == lx]
            out.append(rng.choice(subs) if subs and rng.random() < 0.8 else x)
        w = out
    elif kind == 6:
        out = []
        for x in w:
            lx = x.lower()
            subs = [b for a, b in INFLECT if a == lx] + [a for a, b in INFLECT if b == lx]
            out.append(rng.choice(subs) if subs else x)
        w = out
        if rng.random() < 0.5:
            w = [rng.choice(["fixes", "added", "testing", "removed", "updates"])] + w
    elif kind == 7:
        w = w[: max(1, len(w) // 2)]
    else:
        w = w + rng.sample(words, min(2, len(words)))
    return " ".join(w)


FUZZ_POOL = (
    list("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789")
    + list(" " * 12)
    + list(".,:;!?'\"`-()[]{}<>*&@#$%^_/\\|~+=")
    + ["''", "``", "--", "...", "n't", "'s", "'ll", "&amp;", "&quot;", "-\n", "\n", "\t", "\u00a0", "\x1c",
       "\u2019", "\u201c", "\u201d", "\u00ab", "\u00bb", "\u2013", "\u2014", "\u2012", "\u0130", "\u212a",
       "\u03a3", "\u00e9", "\u0301", "\u00df", "\ufb01", "\u4e2d", "\U0001f600", "\u0663", "\u00b2", "\u200b",
       "\u2028", "\u0131", "\u017f", "\u1e9e", "\u02bc", "\u0345", "\u3000", "\u0085", "\u2160", "\u00aa"]
)

FUZZ_WORDS = ["fix", "the", "bug", "in", "cannot", "gonna", "don't", "'tis", "it's", "tests", "running",
              "add", "repair", "mend", "3.5", "1,000", "foo.", "bar,", "x-y", "a--b", "Σ", "ΟΔΟΣ", "İ", "wanna"]


def fuzz_text(rng):
    parts = []
    for _ in range(rng.randrange(0, 14)):
        if rng.random() < 0.45:
            parts.append(rng.choice(FUZZ_WORDS))
        else:
            parts.append(rng.choice(FUZZ_POOL))
        if rng.random() < 0.5:
            parts.append(" ")
    return "".join(parts)


def read_jsonl(path):
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def wordnet_swap(rng, wn, text):
    """Replaces about half the words with a random WordNet synonym (any sense)."""
    out = []
    for w in text.split():
        lw = w.lower()
        if lw.isalpha() and rng.random() < 0.6:
            names = sorted({lem.name() for ss in wn.synsets(lw) for lem in ss.lemmas()
                            if "_" not in lem.name() and lem.name().lower() != lw})
            if names:
                out.append(rng.choice(names))
                continue
        out.append(w)
    return " ".join(out)


def make_pairs(rng, wn):
    rows = read_jsonl(os.path.join(DATA_DIR, "gitcommits", "test.jsonl"))
    pairs = []  # (hyp, ref, kind)
    picks = rng.sample(rows, 300)
    for r in picks[:120]:  # another user's target
        other = rng.choice([o for o in rows if o["user"] != r["user"]])
        pairs.append((other["target"], r["target"], "other_user"))
    for r in picks[120:220]:  # the same user's history item
        pairs.append((rng.choice(r["history"]), r["target"], "history"))
    for r in picks[220:300]:  # perturbed copies
        pairs.append((perturb(rng, r["target"]), r["target"], "perturbed"))
    for r in rng.sample(rows, 60):
        pairs.append((perturb(rng, perturb(rng, r["target"])), r["target"], "perturbed"))
    for r in rng.sample(rows, 10):
        pairs.append(("", r["target"], "empty_hyp"))
    for r in rng.sample(rows, 80):
        pairs.append((wordnet_swap(rng, wn, r["target"]), r["target"], "synonyms"))
    for h, ref in HAND:
        pairs.append((h, ref, "hand"))
    for _ in range(90):
        pairs.append((fuzz_text(rng), fuzz_text(rng), "fuzz"))
    return pairs


def porter_words(pairs):
    words = set()
    for h, r, _ in pairs:
        for t in (h + " " + r).lower().split():
            words.add(t.strip(".,:;!?\"'()[]"))
    extra = """caresses ponies ties caress cats feed agreed plastered bled motoring sing conflated troubled
    sized hopping tanned falling hissing fizzed failing filing happy sky relational conditional rational
    valenci hesitanci digitizer conformabli radicalli differentli vileli analogousli vietnamization
    predication operator feudalism decisiveness hopefulness callousness formaliti sensitiviti sensibiliti
    triplicate formative formalize electriciti electrical hopeful goodness revival allowance inference
    airliner gyroscopic adjustable defensible irritant replacement adjustment dependent adoption homologou
    communism activate angulariti homologous effective bowdlerize probate rate cease controll roll
    generously dying lying tying news innings inning outings outing cannings canning howe proceed exceed
    succeed skies spied tried flies enjoy enjoyment y yy yyy ay by ye yes eyes spy fly try fulli logi
    archaeology analogi ied dies cried eed eeds ing ings ed eds s ss sses ies is as us was has a i
    bli abli alli fullness playing played plays player crying sleepily generalizations""".split()
    words.update(extra)
    words.update(["naïve", "café", "crème", "straße", "İstanbul".lower(), "ὀδυσσεύς", "日本", "x²"])
    return sorted(w for w in words if w)


class _NoSynsets:
    def synsets(self, word):
        return []


def open_debian_wordnet(src, tmp):
    """nltk's WordNetCorpusReader on a copy of the Debian dictionary files."""
    import nltk
    from nltk.corpus.reader.wordnet import WordNetCorpusReader

    names = [f"{k}.{p}" for k in ("index", "data") for p in ("noun", "verb", "adj", "adv")]
    names += [f"{p}.exc" for p in ("noun", "verb", "adj", "adv")]
    for n in names:
        shutil.copyfile(os.path.join(src, n), os.path.join(tmp, n))
    top = 0
    for p in ("noun", "verb", "adj", "adv"):
        with open(os.path.join(src, "data." + p), encoding="utf-8") as f:
            for line in f:
                if not line.startswith(" "):
                    top = max(top, int(line.split()[1]))
    with open(os.path.join(tmp, "lexnames"), "w", encoding="utf-8") as f:
        for i in range(top + 1):
            f.write(f"{i:02d} lexfile{i:02d} 0\n")
    nltk.data.path.append(tmp)  # nltk only opens files under its data roots

    class DebianWordNet(WordNetCorpusReader):
        # nltk compares get_version() ("3.0") with "wordnet" and would then load
        # its own WordNet copy to map synsets for the multilingual data.
        def map_wn(self, version="wordnet"):
            return None

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return DebianWordNet(tmp, None)


def make_fixture(args):
    import nltk
    import regex
    import rouge_score
    import sacrebleu
    from nltk.stem.porter import PorterStemmer
    from nltk.tokenize import word_tokenize
    from nltk.translate.meteor_score import single_meteor_score
    from rouge_score import rouge_scorer
    from sacrebleu.tokenizers.tokenizer_13a import Tokenizer13a

    try:
        from importlib.metadata import version as pkg_version

        rouge_version = pkg_version("rouge-score")
    except Exception:  # pragma: no cover
        rouge_version = getattr(rouge_score, "__version__", "?")

    rng = random.Random(20240611)
    tmp = tempfile.mkdtemp(prefix="nq_wordnet_")
    try:
        wn = open_debian_wordnet(args.wordnet, tmp)
        pairs = make_pairs(rng, wn)
        wn_version = wn.get_version()
        no_wn = _NoSynsets()
        scorer = rouge_scorer.RougeScorer(["rouge1", "rougeL"], use_stemmer=False)
        tok13a = Tokenizer13a()
        stemmer = PorterStemmer()

        def nltk_tok(s):
            return word_tokenize(s, preserve_line=True)

        out_pairs = []
        for h, r, kind in pairs:
            sc = scorer.score(r, h)
            ht, rt = nltk_tok(h), nltk_tok(r)
            out_pairs.append({
                "kind": kind,
                "hyp": h,
                "ref": r,
                "rouge1": [sc["rouge1"].precision, sc["rouge1"].recall, sc["rouge1"].fmeasure],
                "rougeL": [sc["rougeL"].precision, sc["rougeL"].recall, sc["rougeL"].fmeasure],
                "sentence_bleu": sacrebleu.sentence_bleu(h, [r]).score,
                "meteor": single_meteor_score(rt, ht, wordnet=wn),
                "meteor_nowordnet": single_meteor_score(rt, ht, wordnet=no_wn),
                "hyp_13a": tok13a(h.rstrip()),
                "ref_13a": tok13a(r.rstrip()),
                "hyp_nltk": ht,
                "ref_nltk": rt,
            })
        hyps, refs = [p[0] for p in pairs], [p[1] for p in pairs]
        corpora = {}

        def corpus_entry(name, idx):
            b = sacrebleu.corpus_bleu([hyps[i] for i in idx], [[refs[i] for i in idx]])
            n = len(idx)
            corpora[name] = {
                "indices": idx,
                "bleu": b.score,
                "bleu_counts": list(b.counts),
                "bleu_totals": list(b.totals),
                "bleu_sys_len": b.sys_len,
                "bleu_ref_len": b.ref_len,
                "bleu_bp": b.bp,
                "rouge1_mean": sum(out_pairs[i]["rouge1"][2] for i in idx) / n,
                "rougeL_mean": sum(out_pairs[i]["rougeL"][2] for i in idx) / n,
                "meteor_mean": sum(out_pairs[i]["meteor"] for i in idx) / n,
            }

        corpus_entry("all", list(range(len(pairs))))
        corpus_entry("real", [i for i, p in enumerate(pairs) if p[2] in ("other_user", "history", "perturbed")])
        corpus_entry("synonyms", [i for i, p in enumerate(pairs) if p[2] == "synonyms"])
        corpus_entry("hand", [i for i, p in enumerate(pairs) if p[2] == "hand"])
        corpus_entry("fuzz", [i for i, p in enumerate(pairs) if p[2] == "fuzz"])
        corpus_entry("short", [i for i, p in enumerate(pairs) if len(p[0].split()) <= 2][:20])

        words = porter_words(pairs)
        porter = {w: stemmer.stem(w) for w in words}
        syn_words = sorted(set(words) | set(porter.values()))
        syn_words = sorted(rng.sample(syn_words, 700) + ["fix", "repair", "builds", "better", "geese", "ran", "is"])
        synonyms = {}
        for w in syn_words:
            synonyms[w] = sorted({lem.name() for ss in wn.synsets(w) for lem in ss.lemmas() if "_" not in lem.name()})
        lower_probe = ["ΟΔΟΣ", "Σ", "ΑΣ.", "Σ.Α", "ΑΣ'Α", "ΑΣ\u0301", "A\u0301Σ", "İ", "\u212a", "ǅ", "Ⅻ", "ＡＢＣ",
                       "Straße", "ẞ", "ΌΣΟΣ ΣΑΣ", "a\u03a3", "1Σ", "\u02bcΣ", "Σ\u02bc", "\U00010400"]
        fixture = {
            "versions": {
                "python": sys.version.split()[0],
                "unicodedata": unicodedata.unidata_version,
                "rouge-score": rouge_version,
                "sacrebleu": sacrebleu.__version__,
                "nltk": nltk.__version__,
                "regex": regex.__version__,
                "wordnet": f"WordNet {wn_version} dictionary files from {args.wordnet} (Debian wordnet-base)",
            },
            "pairs": out_pairs,
            "corpora": corpora,
            "porter": porter,
            "wordnet_synonyms": synonyms,
            "py_lower": {s: s.lower() for s in lower_probe},
        }
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(args.out, exist_ok=True)
    path = os.path.join(args.out, "metrics.json")
    with open(path, "w", encoding="utf-8") as f:
        json.dump(fixture, f, ensure_ascii=True, indent=0, sort_keys=True)
        f.write("\n")
    print(f"wrote {path}: {len(out_pairs)} pairs, {len(porter)} stems, {len(synonyms)} synonym sets "
          f"({sum(1 for v in synonyms.values() if v)} not empty)")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tables", action="store_true", help="write include/nextquill/eval/text_tables.hpp")
    ap.add_argument("--check-tables", action="store_true", help="exit 1 if text_tables.hpp is stale")
    ap.add_argument("--wordnet", default="/usr/share/wordnet", help="WordNet 3.0 dict directory")
    ap.add_argument("--out", default=FIXTURE_OUT)
    args = ap.parse_args()
    if args.tables or args.check_tables:
        text = render_tables()
        if args.check_tables:
            with open(TABLES_OUT, encoding="utf-8") as f:
                stale = f.read() != text
            print("stale" if stale else "up to date")
            sys.exit(1 if stale else 0)
        with open(TABLES_OUT, "w", encoding="utf-8") as f:
            f.write(text)
        print(f"wrote {TABLES_OUT}")
        return
    make_fixture(args)


if __name__ == "__main__":
    main()

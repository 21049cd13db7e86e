"""Tokenizer speed: minigpt2 vs HF's pure-Python GPT2Tokenizer, HF's Rust GPT2TokenizerFast and tiktoken.

    python benchmarks/bench_tokenizer.py                 # 1 MiB samples, 5 interleaved repeats, ~2 minutes
    python benchmarks/bench_tokenizer.py --quick         # 128 KiB samples, 2 repeats: a smoke run

Three 1 MiB samples are built from local files only (no network):
  * English prose: Python's documentation topics (pydoc_data) then standard-library docstrings;
  * Python source: standard-library modules, concatenated in sorted order;
  * mixed scripts: English sentences interleaved with generated sentences in Cyrillic, Greek, Arabic, Hebrew,
    Devanagari, Thai, Hangul, CJK and kana (pseudo-words drawn with Zipf frequencies from each script's letters),
    numbers and emoji (a seeded generator: the same text on every machine with the same Python).

Each repeat visits the samples, and for each sample the tokenizers in a rotating order. Every tokenizer is built
anew outside the timer; "cold" times its first encode of the sample (empty caches), "warm" the second encode of the
same text by the same object. Single-threaded: the Rust tokenizer's thread pool is limited to one thread. The ids
of all tokenizers are compared. MB/s is 10^6 bytes of UTF-8 per second; medians with [min - max] over repeats.

Then the linear-time check: minigpt2 on 10 KB, 100 KB and 1 MB of one repeated character and of one "word" of
random letters with no space, on a new tokenizer each time (the regex makes each input a single piece).
Results go to stdout (a Markdown table) and to a JSON file (--json, default benchmarks/results/).
"""
import argparse
import ast
import gc
import gzip
import json
import logging
import os
import pathlib
import platform
import random
import statistics
import sys
import sysconfig
import tempfile
import time
import unicodedata

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")  # before tokenizers is imported: one thread
os.environ.setdefault("RAYON_NUM_THREADS", "1")
os.environ.setdefault("RAYON_RS_NUM_CPUS", "1")

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from minigpt2 import bpe as B  # noqa: E402
from minigpt2.tokenizer import GPT2Tokenizer  # noqa: E402

MiB = 1 << 20
logging.getLogger("minigpt2").setLevel(logging.ERROR)  # no "sequence longer than 1024" warnings
STDLIB = pathlib.Path(sysconfig.get_paths()["stdlib"])


# -- samples ----------------------------------------------------------------------------------------------------------
def _cut(text: str, size: int) -> str:
    """The longest prefix of text with at most `size` UTF-8 bytes."""
    return text.encode("utf-8")[:size].decode("utf-8", "ignore")


def _stdlib_files():
    skip = ("test", "idlelib", "lib2to3", "site-packages", "tkinter", "turtledemo", "ensurepip")
    for path in sorted(STDLIB.rglob("*.py")):
        if not any(part in skip for part in path.relative_to(STDLIB).parts):
            yield path


def english_prose(size: int) -> str:
    from pydoc_data.topics import topics

    parts = [topics[k] for k in sorted(topics)]
    total = sum(len(p.encode()) for p in parts)
    for path in _stdlib_files():
        if total >= size:
            break
        try:
            tree = ast.parse(path.read_text("utf-8"))
        except (SyntaxError, UnicodeDecodeError):
            continue
        for node in ast.walk(tree):
            if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
                doc = ast.get_docstring(node)
                if doc and len(doc) > 200:
                    parts.append(doc)
                    total += len(doc.encode())
    return _cut("\n\n".join(parts), size)


def python_source(size: int) -> str:
    parts, total = [], 0
    for path in _stdlib_files():
        text = path.read_text("utf-8", "replace")
        parts.append(text)
        total += len(text.encode())
        if total >= size:
            break
    return _cut("".join(parts), size)


SCRIPTS = {  # name: (first, last code point, word lengths, spaces between words)
    "cyrillic": (0x0430, 0x044F, (2, 9), True), "greek": (0x03B1, 0x03C9, (2, 9), True),
    "arabic": (0x0621, 0x064A, (2, 7), True), "hebrew": (0x05D0, 0x05EA, (2, 6), True),
    "devanagari": (0x0900, 0x097F, (2, 6), True), "thai": (0x0E01, 0x0E4E, (2, 6), False),
    "hangul": (0xAC00, 0xAFFF, (1, 4), True), "cjk": (0x4E00, 0x5FFF, (1, 3), False),
    "kana": (0x3041, 0x30FA, (2, 5), False),
}
EMOJI = ["😀", "🎉", "👍", "👍🏽", "🚀", "❤️", "🇯🇵", "👩‍💻", "👨‍👩‍👧", "🤖", "✨", "🔥", "🙂", "🌍", "📈"]


def mixed_scripts(size: int, english: str) -> str:
    rng = random.Random(1234)
    vocab = {}
    for name, (lo, hi, (short, long), _) in SCRIPTS.items():
        letters = [chr(c) for c in range(lo, hi + 1) if unicodedata.category(chr(c))[0] in "LM"]
        vocab[name] = ["".join(rng.choice(letters) for _ in range(rng.randint(short, long))) for _ in range(3000)]
    zipf = [1 / (rank + 1) for rank in range(3000)]
    sentences = [s.strip() for s in english.replace("\n", " ").split(". ") if 20 < len(s) < 300]
    parts, total = [], 0
    while total < size:
        if rng.random() < 0.35:
            part = rng.choice(sentences) + ". "
        else:
            name = rng.choice(list(SCRIPTS))
            words = rng.choices(vocab[name], zipf, k=rng.randint(4, 16))
            sep = " " if SCRIPTS[name][3] else ""
            part = sep.join(words) + rng.choice(["。", ". ", "! ", "? ", "، ", "; "])
        if rng.random() < 0.15:
            part += rng.choice(EMOJI) + " "
        if rng.random() < 0.1:
            part += f"{rng.randint(0, 10 ** rng.randint(1, 7)):,} "
        if rng.random() < 0.08:
            part += "\n\n"
        parts.append(part)
        total += len(part.encode())
    return _cut("".join(parts), size)


# -- tokenizers ------------------------------------------------------------------------------------------------------
def reference_files(directory: pathlib.Path):
    vocab, merges = directory / "vocab.json", directory / "merges.txt"
    for ours, path in (("encoder.json", vocab), ("vocab.bpe", merges)):
        path.write_bytes(gzip.decompress((pathlib.Path(B.DATA_DIR) / (ours + ".gz")).read_bytes()))
    return str(vocab), str(merges)


def make_factories(directory: pathlib.Path):
    """name -> (build a new tokenizer, encode function). References are skipped when not installed."""
    vocab, merges = reference_files(directory)
    factories = {"minigpt2": (lambda: GPT2Tokenizer.from_pretrained("gpt2"), lambda t, s: t.encode(s))}
    versions = {"minigpt2": "0.1.0", "python": platform.python_version()}
    try:
        import transformers

        transformers.logging.set_verbosity_error()
        versions["transformers"] = transformers.__version__
        factories["HF GPT2Tokenizer (Python)"] = (
            lambda: transformers.GPT2Tokenizer(vocab, merges, model_max_length=1024), lambda t, s: t.encode(s))
        try:
            import tokenizers

            versions["tokenizers"] = tokenizers.__version__
            fast_file = str(directory / "tokenizer.json")
            transformers.GPT2TokenizerFast(vocab, merges).backend_tokenizer.save(fast_file)
            factories["HF GPT2TokenizerFast (Rust)"] = (
                lambda: transformers.GPT2TokenizerFast(tokenizer_file=fast_file, model_max_length=1024),
                lambda t, s: t.encode(s))
        except ImportError:
            pass
    except ImportError:
        pass
    try:
        import tiktoken
        import tiktoken.load

        versions["tiktoken"] = tiktoken.__version__
        pattern = r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""

        def build_tiktoken():
            ranks = tiktoken.load.data_gym_to_mergeable_bpe_ranks(merges, vocab)
            return tiktoken.Encoding("gpt2-local", pat_str=pattern, mergeable_ranks=ranks,
                                     special_tokens={"<|endoftext|>": 50256})

        factories["tiktoken (Rust)"] = (build_tiktoken, lambda t, s: t.encode(s, allowed_special="all"))
    except ImportError:
        pass
    return factories, versions


CLOCK = time.perf_counter  # --clock cpu: time.process_time (CPU time of this process, all its threads)


def timed(fn, *args):
    gc.collect()
    start = CLOCK()
    result = fn(*args)
    return CLOCK() - start, result


def speed(samples, factories, repeats):
    names = list(factories)
    rows = {(s, n): {"cold": [], "warm": [], "build": []} for s in samples for n in names}
    same_ids = {s: True for s in samples}
    for r in range(repeats):
        for sample, text in samples.items():
            order = names[r % len(names):] + names[:r % len(names)]
            ids_seen = []
            for name in order:
                build, encode = factories[name]
                build_time, tok = timed(build)
                cold, ids = timed(encode, tok, text)
                warm, ids2 = timed(encode, tok, text)
                row = rows[(sample, name)]
                row["build"].append(build_time)
                row["cold"].append(cold)
                row["warm"].append(warm)
                ids_seen.append(list(ids))
                same_ids[sample] &= list(ids2) == ids_seen[0]
                del tok
            same_ids[sample] &= all(ids == ids_seen[0] for ids in ids_seen)
            print(f"  repeat {r + 1}/{repeats} {sample}: done", file=sys.stderr)
    return rows, same_ids


def linear_check(sizes, repeats):
    rng = random.Random(7)
    letters = "".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(max(sizes)))
    inputs = {"one repeated character ('a')": lambda n: "a" * n, "one word of random letters": lambda n: letters[:n]}
    out = {}
    for label, make in inputs.items():
        for n in sizes:
            text = make(n)
            times = []
            for _ in range(repeats):
                tok = GPT2Tokenizer.from_pretrained("gpt2", model_max_length=10 ** 9)
                t, ids = timed(tok.encode, text)
                times.append(t)
            out[(label, n)] = {"seconds": statistics.median(times), "tokens": len(ids)}
    return out


def mbps(nbytes, seconds):
    return nbytes / seconds / 1e6


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=None, help="sample size in bytes (default 1 MiB, --quick 128 KiB)")
    parser.add_argument("--repeats", type=int, default=None, help="default 5, --quick 2")
    parser.add_argument("--quick", action="store_true", help="128 KiB samples, 2 repeats, linear check to 100 KB")
    parser.add_argument("--clock", choices=["wall", "cpu"], default="wall",
                        help="wall: time.perf_counter (default); cpu: time.process_time, steadier on a shared machine")
    parser.add_argument("--json", default=str(ROOT / "benchmarks" / "results" / "bench_tokenizer.json"),
                        help="where the results go (default benchmarks/results/bench_tokenizer.json)")
    args = parser.parse_args(argv)
    global CLOCK
    CLOCK = time.process_time if args.clock == "cpu" else time.perf_counter
    if args.size is None:  # (what the user gave wins over --quick)
        args.size = 128 * 1024 if args.quick else MiB
    if args.repeats is None:
        args.repeats = 2 if args.quick else 5
    if args.size < 1 or args.repeats < 1:
        parser.error(f"--size {args.size} --repeats {args.repeats}: give 1 or more of each")
    if args.json:
        try:  # checked now, not after the measuring
            pathlib.Path(args.json).parent.mkdir(parents=True, exist_ok=True)
            tempfile.TemporaryFile(dir=pathlib.Path(args.json).parent).close()
        except OSError as e:
            parser.error(f"--json {args.json}: cannot write there ({e}); give a path you can write")
    prose = english_prose(args.size)
    samples = {"English prose": prose, "Python source": python_source(args.size),
               "mixed scripts": mixed_scripts(args.size, english_prose(4 * MiB))}
    with tempfile.TemporaryDirectory() as tmp:
        factories, versions = make_factories(pathlib.Path(tmp))
        rows, same_ids = speed(samples, factories, args.repeats)
    sizes = [10_000, 100_000] if args.quick else [10_000, 100_000, 1_000_000]
    linear = linear_check(sizes, 3)

    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")),
               platform.processor()) if os.path.exists("/proc/cpuinfo") else platform.processor()
    load = f", load average {os.getloadavg()[1]:.1f}" if hasattr(os, "getloadavg") else ""
    print(f"\n{cpu}, {os.cpu_count()} cores{load}, Python {platform.python_version()}; "
          + ", ".join(f"{k} {v}" for k, v in versions.items() if k not in ("python",)))
    print(f"samples: {', '.join(f'{k} {len(v.encode()):,} bytes' for k, v in samples.items())}; "
          f"{args.repeats} interleaved repeats; {args.clock} clock; MB/s = 10^6 bytes/s, median [min - max]\n")
    print("| sample | tokenizer | cold MB/s | warm MB/s | same ids |")
    print("|---|---|---|---|---|")
    report = {"machine": cpu, "cores": os.cpu_count(), "versions": versions, "repeats": args.repeats,
              "clock": args.clock, "load_average": os.getloadavg() if hasattr(os, "getloadavg") else None,
              "samples": {k: len(v.encode()) for k, v in samples.items()}, "speed": [], "linear": []}
    for (sample, name), row in rows.items():
        nbytes = len(samples[sample].encode())
        cells = []
        for kind in ("cold", "warm"):
            rates = sorted(mbps(nbytes, t) for t in row[kind])
            cells.append(f"{statistics.median(rates):.2f} [{rates[0]:.2f} - {rates[-1]:.2f}]")
            report["speed"].append({"sample": sample, "tokenizer": name, "pass": kind, "median_MBps": statistics.median(rates),
                                    "min_MBps": rates[0], "max_MBps": rates[-1], "seconds": row[kind],
                                    "build_seconds": row["build"]})
        print(f"| {sample} | {name} | {cells[0]} | {cells[1]} | {'yes' if same_ids[sample] else 'NO'} |")
    builds = {name: [t for s in samples for t in rows[(s, name)]["build"]] for name in factories}
    print("\nbuilding a tokenizer, outside the timings above (median; first in the process): " + "; ".join(
        f"{name} {statistics.median(ts) * 1e3:.1f} ms ({ts[0] * 1e3:.0f} ms)" for name, ts in builds.items()))
    print("\nlinear-time check (minigpt2, a new tokenizer per run, median of 3): time, and time per byte\n")
    print("| input | " + " | ".join(f"{n // 1000:,} KB" for n in sizes) + " |")
    print("|---|" + "---|" * len(sizes))
    for label in dict.fromkeys(k[0] for k in linear):
        cells = [f"{linear[(label, n)]['seconds'] * 1e3:.1f} ms ({linear[(label, n)]['seconds'] / n * 1e9:.0f} ns/B)"
                 for n in sizes]
        print(f"| {label} | " + " | ".join(cells) + " |")
        for n in sizes:
            report["linear"].append({"input": label, "chars": n, **linear[(label, n)]})
    if args.json:
        path = pathlib.Path(args.json)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(report, indent=2))
        print(f"\nwrote {path}")
    return 0 if all(same_ids.values()) else 1


if __name__ == "__main__":
    sys.exit(main())

"""Writes tests/fixtures/cli/{train,valid,test}.jsonl: a tiny synthetic
personalization dataset (6 users, each with a recognisable writing habit) for
the CLI end-to-end test. Deterministic; stdlib only."""
import json
import random
from pathlib import Path

OUT = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "cli"
AREAS = ["parser", "docs", "cache", "net", "ui", "build"]
VERBS = ["fix", "add", "remove", "update", "refactor", "speed up"]
THINGS = ["error path", "option parsing", "unit tests", "memory leak", "help text", "timeouts"]
STYLES = [
    lambda a, v, t: f"{a}: {v} {t}",
    lambda a, v, t: f"{a.capitalize()}: {v.capitalize()}ed {t}".replace("eed", "ed"),
    lambda a, v, t: f"[{a}] {v} {t}",
    lambda a, v, t: f"{v.upper()} {t} in {a}",
    lambda a, v, t: f"{a}/{t.split()[0]}: {v} it",
    lambda a, v, t: f"{v} {t} ({a})",
]


def main():
    rng = random.Random(7)
    splits = {"train": [], "valid": [], "test": []}
    for u, style in enumerate(STYLES):
        user = f"user{u + 1}"
        history = []
        for i in range(10):
            a, v, t = rng.choice(AREAS), rng.choice(VERBS), rng.choice(THINGS)
            rec = {"user": user, "history": history[-4:], "query": f"src/{a}/{t.split()[0]}.c +{rng.randint(1, 40)} -{rng.randint(0, 9)}",
                   "target": style(a, v, t)}
            split = "test" if i == 9 else "valid" if i == 8 else "train"
            splits[split].append(rec)
            history.append(rec["target"])
    OUT.mkdir(parents=True, exist_ok=True)
    for name, recs in splits.items():
        with open(OUT / f"{name}.jsonl", "w") as f:
            for r in recs:
                f.write(json.dumps(r) + "\n")


if __name__ == "__main__":
    main()

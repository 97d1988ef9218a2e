"""Regenerate the README's generated blocks (between ``<!-- NAME:start -->`` and ``<!-- NAME:end -->``).

    python tools/readme_blocks.py                 # rewrite README.md's static blocks
    python tools/readme_blocks.py --check         # exit 1 if a static block is stale (the tests run this check)
    python tools/readme_blocks.py --demo [DIR]    # rewrite the demo block from demo results (default results/cards)

Blocks: ``reader-layouts`` (each dataset reader's on-disk ``layout``, the same text `sparc-eval data verify`
prints) and ``demo``: what the bundled checkpoints show, generated from the seed-group comparison
``sparc-eval compare DIR --a shapes-clip --b shapes-sparc`` (the same ``results.compare`` rows) and the
``untrained`` control's results. ``DIR`` holds the results ``python tools/checkpoints.py cards`` writes
(every bundled checkpoint and the control, CPU, one thread, seed 0); ``tests/test_readme.py`` recomputes
the block from the same evaluation and fails when the README's block is stale (numbers may differ by
``DEMO_TOLERANCE`` points between machines: CPU kernels differ).
"""
from __future__ import annotations

import argparse
import math
import re
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
DEMO_RESULTS = ROOT / "results" / "cards"
BASELINE_GROUP, METHOD_GROUP, CONTROL = "shapes-clip", "shapes-sparc", "untrained"
TRAINED_HEADS = ("linear_probe", "segmentation_transfer", "detection_transfer", "caption_transfer")
DEMO_TOLERANCE = 0.3  # points: a number of the demo block may differ this much between machines


def reader_layouts() -> str:
    from sparc_eval.data.base import formats

    out = []
    for name, reader in sorted(formats().items()):
        body = "\n".join(line[4:] if line.startswith("    ") else line for line in reader.layout.strip("\n").splitlines())
        out += [f"<details><summary><code>{name}</code> ({reader.kind})</summary>", "", "```", body, "```", "",
                "</details>"]
    return "\n".join(out)


def _f(x: float, signed: bool = False) -> str:
    return "–" if x is None or math.isnan(x) else (f"{x:+.1f}" if signed else f"{x:.1f}")


def _join(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def demo_block(results: Path | str = DEMO_RESULTS) -> str:
    """The README's demo paragraph from demo results: the seed-group comparison of the SPARC and CLIP
    checkpoints (``results.compare``), the untrained control against chance, and what is and is not
    significant across seeds."""
    from sparc_eval.metrics.controls import holm
    from sparc_eval.results.chance import MARKS, entry_status, no_skill
    from sparc_eval.results.collect import collect
    from sparc_eval.results.compare import compare
    from sparc_eval.results.paired import differences
    from sparc_eval.tasks import load_suite

    coll = collect([Path(results)])
    order = {t: i for i, t in enumerate(load_suite("demo").tasks)}
    rows = sorted(compare(coll, coll, "main", a_name=BASELINE_GROUP, b_name=METHOD_GROUP),
                  key=lambda r: (order.get(r.task, len(order)), r.task))
    full = [e for e in coll.entries if not e.partial]
    control = {e.task: e for e in full if e.model == CONTROL}
    trained = [e for e in full if e.role == "model"]
    types = {e.task: e.record.task.type for e in full}
    seeds_a, seeds_b = rows[0].difference.a.n, rows[0].difference.b.n
    seeds = f"{seeds_a} training seed{'s' if seeds_a != 1 else ''} each" if seeds_a == seeds_b else \
        f"{seeds_a} and {seeds_b} training seeds"

    # the untrained control against chance, and whether a trained model separates from it (paired, Holm)
    tests, separated = {}, {}
    for e in trained:
        u = control.get(e.task)
        if u is not None:
            d = differences(u, e, [e.main_metric])[0][e.main_metric]
            if d.has_noise:
                tests[(e.task, e.model)] = (d.p_value, d)
    adjusted = holm({k: v[0] for k, v in tests.items()}) if tests else {}
    direction = {r.task: r.higher_is_better for r in rows}
    for key, (_, d) in tests.items():
        better = d.lo > 0 if direction.get(key[0], True) else d.hi < 0
        separated[key[0]] = separated.get(key[0], False) or (adjusted[key] <= 0.05 and better)

    head = ["task (main metric)", "chance", CONTROL, f"CLIP ({BASELINE_GROUP}) mean ± sd",
            f"SPARC ({METHOD_GROUP}) mean ± sd", "SPARC − CLIP [95% CI]", "significant"]
    lines = ["| " + " | ".join(head) + " |", "|---|---:|---:|---:|---:|---:|---|"]
    sig, not_sig, dense = [], [], None
    for r in rows:
        d, iv = r.difference, r.difference.interval
        u = control.get(r.task)
        state = entry_status(u) if u is not None else None
        u_text = (_f(u.value()) + (f" {MARKS[state]}" if state in MARKS else "")) if u is not None else "–"
        chance = u.chance() if u is not None else None
        ci = f"{_f(d.diff, True)} [{_f(iv[0])}, {_f(iv[1])}]{'ᵗ' if d.shown == 't' else 'ᵇ'}" if iv else _f(d.diff, True)
        lines.append(f"| {r.task} ({d.metric} {'↑' if r.higher_is_better else '↓'}) | {_f(chance)} | {u_text} | "
                     f"{_f(d.a.mean)} ± {_f(d.a.sd)} | {_f(d.b.mean)} ± {_f(d.b.sd)} | {ci} | "
                     f"{'yes' if r.significant else 'no'} |")
        (sig if r.significant else not_sig).append(f"{r.task} ({_f(d.diff, True)})")
        if types.get(r.task) == "zeroshot_segmentation":
            dense = r
    zero_shot = [t for t in control if types.get(t) not in TRAINED_HEADS]
    above = [t for t in zero_shot if not no_skill(entry_status(control[t])) and entry_status(control[t]) is not None]
    below = [t for t in zero_shot if entry_status(control[t]) == "below chance"]
    unseparated = [t for t in control if not separated.get(t)]
    flagged = sorted({c for e in full for c in (e.record.details or {}).get("artifact_flagged") or []})

    intro = [f"`make demo` evaluates the bundled checkpoints — one tiny dual encoder trained on the synthetic shapes "
           f"world with the CLIP loss and with the SPARC loss, {seeds} — on the demo suite, next to the "
           f"`{CONTROL}` control (the same architecture with random weights) and the ground-truth oracle, and prints "
           f"a leaderboard with a seed-group table (HTML in `results/demo/leaderboard.html`). Over seeds "
           f"(`sparc-eval compare results/cards --a {BASELINE_GROUP} --b {METHOD_GROUP}`; CPU, one thread, seed 0):",
           "", *lines, "",
           f"Intervals: ᵗ the t-interval over seed pairs (df = seeds − 1), ᵇ the two-way bootstrap over images and "
           f"seeds; the wider is shown with fewer than 5 seeds. Significant: after Holm's correction over the "
           f"{len(rows)} tasks, never where both sides are at or below chance. ≈ at chance, ▾ below chance "
           f"(the 95% interval covers the chance level, or lies below it).", ""]
    across = "across seeds" if min(seeds_a, seeds_b) >= 2 else "over images"
    out = [] if min(seeds_a, seeds_b) >= 2 else [
        "With one seed per method these intervals resample the images only: they say nothing about training seeds."]
    if sig:
        out.append(f"**Significant {across}**: {_join(sig)}.")
    else:
        out.append(f"**No difference between SPARC and CLIP is significant {across}** (with {seeds} the "
                   f"seed-level interval is wide).")
    if not_sig:
        out.append(f"**Not significant {across}**: {_join(not_sig)}.")
    if dense is not None:
        d = dense.difference
        if dense.significant and (d.diff > 0) == dense.higher_is_better:
            out.append(f"SPARC's dense advantage (zero-shot segmentation from patch embeddings) shows {across} "
                       f"on the shapes world ({_f(d.diff, True)} {d.metric}).")
        else:
            why = ("both methods at or below chance there" if dense.a_no_skill and dense.b_no_skill
                   else "not significant")
            out.append(f"SPARC's dense advantage (zero-shot segmentation from patch embeddings) does **not** show "
                       f"{across} on the shapes world ({_f(d.diff, True)} {d.metric}, {why}).")
    if above:
        out.append(f"The `{CONTROL}` control is **above** chance on {_join(above)}: those tasks reward something "
                   f"a random network already has.")
    else:
        out.append(f"The `{CONTROL}` control is at or below chance on every zero-shot task"
                   + (f" (below on {_join(below)}: chance is the best predictor that ignores the image, and a random "
                      f"network is a worse one)" if below else "") + ".")
    if unseparated:
        out.append(f"No trained model separates from the `{CONTROL}` control on {_join(unseparated)}.")
    else:
        out.append(f"Every task separates at least one trained model from the `{CONTROL}` control (paired "
                   f"bootstrap, Holm over {len(tests)} comparisons).")
    out.append(f"The text-only control flags probe categor{'ies' if len(flagged) != 1 else 'y'} {_join(flagged)}."
               if flagged else "No probe category is flagged by the text-only control (artifact_acc).")
    out.append("**What it does not show**: anything about real images, bigger models or longer training; these are "
               "tiny models trained for minutes on one synthetic world.")
    return "\n".join([_wrap(intro[0]), *intro[1:-2], _wrap(intro[-2]), "", _wrap(" ".join(out))])


def _wrap(text: str) -> str:
    return textwrap.fill(text, width=115, break_long_words=False, break_on_hyphens=False)


BLOCKS = {"reader-layouts": reader_layouts}


def _replace(text: str, name: str, content: str) -> str:
    pattern = re.compile(rf"(<!-- {name}:start -->\n).*?(<!-- {name}:end -->)", re.S)
    if not pattern.search(text):
        raise SystemExit(f"{README}: no <!-- {name}:start --> ... <!-- {name}:end --> block")
    return pattern.sub(lambda m: m.group(1) + content + "\n" + m.group(2), text)


def block(text: str, name: str) -> str:
    """The current content of block ``name`` of ``text``."""
    m = re.search(rf"<!-- {name}:start -->\n(.*?)\n<!-- {name}:end -->", text, re.S)
    if m is None:
        raise SystemExit(f"{README}: no <!-- {name}:start --> ... <!-- {name}:end --> block")
    return m.group(1)


_NUMBER = re.compile(r"[-+−]?\d+(?:\.\d+)?")


def same_up_to_numbers(a: str, b: str, tolerance: float = DEMO_TOLERANCE) -> bool:
    """Whether two texts agree word for word (line breaks aside), their numbers within ``tolerance``."""
    a, b = " ".join(a.split()), " ".join(b.split())
    parts_a, parts_b = _NUMBER.split(a), _NUMBER.split(b)
    nums_a, nums_b = _NUMBER.findall(a), _NUMBER.findall(b)
    if parts_a != parts_b or len(nums_a) != len(nums_b):
        return False

    def value(x: str) -> float:
        return float(x.replace("−", "-"))

    return all(abs(value(x) - value(y)) <= tolerance for x, y in zip(nums_a, nums_b))


def render(text: str) -> str:
    """``text`` with every static generated block replaced by its current content (not the demo block,
    which needs demo results: ``render_demo``)."""
    for name, make in BLOCKS.items():
        text = _replace(text, name, make())
    return text


def render_demo(text: str, results: Path | str = DEMO_RESULTS) -> str:
    """``text`` with the demo block regenerated from ``results``."""
    return _replace(text, "demo", demo_block(results))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="exit 1 if README.md is stale; write nothing")
    parser.add_argument("--demo", nargs="?", const=str(DEMO_RESULTS), metavar="DIR",
                        help="regenerate the demo block from demo results (default: results/cards)")
    args = parser.parse_args()
    text = README.read_text(encoding="utf-8")
    new = render(text)
    if args.demo:
        if not Path(args.demo).is_dir():
            raise SystemExit(f"{args.demo}: no demo results; run python tools/checkpoints.py cards first")
        new = render_demo(new, args.demo)
    if args.check:
        if new != text:
            print(f"{README}: generated blocks are stale; run python tools/readme_blocks.py", file=sys.stderr)
            return 1
        return 0
    README.write_text(new, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())

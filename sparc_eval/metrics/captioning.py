"""Standard captioning metrics computed by pycocoevalcap: BLEU-1..4, METEOR, ROUGE-L, CIDEr (and SPICE
when its Stanford CoreNLP jars are present locally).

The pipeline is ``pycocoevalcap.eval.COCOEvalCap.evaluate`` without its file plumbing: the PTB
tokenizer (Stanford CoreNLP 3.4.1, lower-cases, drops punctuation tokens) over references and
predictions in one JVM call, then the scorers on ``{image: [tokenised references]}`` and
``{image: [tokenised prediction]}``. Every caption's whitespace is collapsed to single spaces first
(see ``ptb_tokenize``), which changes no token. BLEU is corpus-level (closest reference length), METEOR the
corpus score of METEOR 1.5 (``-l en -norm``), ROUGE-L and CIDEr(-D) the means of per-image scores;
CIDEr's idf comes from the references of the evaluated images. Every value is x100 (CIDEr as
commonly reported, e.g. 117.4 for pycocoevalcap's 1.174).

METEOR runs a JVM that loads a paraphrase table (seconds); ``meteor_scorer()`` starts it once per
process and reuses it (pycocoevalcap's ``Meteor`` serialises calls with a lock), so a run with
several caption tasks pays the start-up once; the measured start-up time is reported.

All of them run ``java``: a missing ``java`` (or a JVM that cannot start) is a ``ConfigError``
raised before any scoring.

SPICE: pycocoevalcap's ``Spice()`` downloads Stanford CoreNLP 3.6.0 on first use, which never
happens here. SPICE is computed only when ``spice_dir`` holds ``stanford-corenlp-3.6.0.jar`` and
``stanford-corenlp-3.6.0-models.jar`` (from ``stanford-corenlp-full-2015-12-09.zip``); the SPICE jar
shipped in pycocoevalcap is then run with those jars on its class path.
"""
from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import ConfigError, DataError

COCO_TO_KEY = {"Bleu_1": "BLEU_1", "Bleu_2": "BLEU_2", "Bleu_3": "BLEU_3", "Bleu_4": "BLEU_4", "METEOR": "METEOR",
               "ROUGE_L": "ROUGE_L", "CIDEr": "CIDEr", "SPICE": "SPICE"}
METRIC_KEYS = ("BLEU_1", "BLEU_2", "BLEU_3", "BLEU_4", "METEOR", "ROUGE_L", "CIDEr")
SPICE_JARS = ("stanford-corenlp-3.6.0.jar", "stanford-corenlp-3.6.0-models.jar")

_METEOR_LOCK = threading.Lock()
_METEOR: dict = {}


@dataclass
class CaptionScores:
    """Corpus metrics (x100), per-image scores (x100; BLEU per image is pycocoevalcap's sentence
    BLEU) and wall times in seconds (``meteor_startup`` is 0.0 when the JVM was already running)."""

    metrics: dict[str, float]
    per_image: dict[Hashable, dict[str, float]]
    timings: dict[str, float] = field(default_factory=dict)


def require_java() -> str:
    """The ``java`` executable pycocoevalcap runs (``ConfigError`` when there is none on ``PATH``)."""
    java = shutil.which("java")
    if java is None:
        raise ConfigError("caption metrics need Java: pycocoevalcap runs the PTB tokenizer, METEOR and SPICE "
                          "on a JVM, and no 'java' is on PATH; install a Java runtime (e.g. apt-get install "
                          "default-jre-headless) or score without caption metrics")
    return java


def ptb_tokenize(references: Mapping[Hashable, Sequence[str]], predictions: Mapping[Hashable, str]
                 ) -> tuple[dict[Hashable, list[str]], dict[Hashable, list[str]]]:
    """pycocoevalcap's PTB tokenisation of references and predictions (one JVM call).

    The same command and punctuation filter as ``pycocoevalcap.tokenizer.PTBTokenizer``, with two
    safeguards: each caption is collapsed to single spaces first (the tokenizer also ends a line at
    ``\\r``, U+2028, U+2029, form feeds..., and output lines are paired with captions by position, so
    one such character would shift every later caption's tokens), and the number of lines back must
    equal the number sent. The input file goes to a temporary folder, not into pycocoevalcap's
    install folder (which may be read-only).
    """
    from pycocoevalcap.tokenizer import ptbtokenizer as ptb

    owners = [("ref", k) for k, refs in references.items() for _ in refs] + [("pred", k) for k in predictions]
    lines = [" ".join(c.split()) for refs in references.values() for c in refs]
    lines += [" ".join(c.split()) for c in predictions.values()]
    jar = Path(ptb.__file__).with_name(ptb.STANFORD_CORENLP_3_4_1_JAR)
    cmd = [require_java(), "-cp", str(jar), "edu.stanford.nlp.process.PTBTokenizer", "-preserveLines", "-lowerCase"]
    with tempfile.TemporaryDirectory(prefix="sparc-eval-ptb-") as tmp:
        text = Path(tmp) / "captions.txt"
        text.write_bytes("\n".join(lines).encode())
        try:
            out = subprocess.run([*cmd, str(text)], capture_output=True, check=True).stdout.decode()
        except (OSError, subprocess.CalledProcessError) as e:
            detail = e.stderr.decode(errors="replace")[-500:] if isinstance(e, subprocess.CalledProcessError) else e
            raise ConfigError(f"the PTB tokenizer ({jar}) failed to run: {detail}") from None
    tokenised = out.split("\n")
    if len(tokenised) != len(lines):
        raise DataError(f"the PTB tokenizer returned {len(tokenised)} lines for {len(lines)} captions; a caption "
                        f"holds a character it reads as a line break")
    joined: dict = {}
    for owner, line in zip(owners, tokenised):
        joined.setdefault(owner, []).append(" ".join(w for w in line.rstrip().split(" ") if w not in ptb.PUNCTUATIONS))
    return ({k: joined.get(("ref", k), []) for k in references}, {k: joined[("pred", k)] for k in predictions})


def meteor_scorer():
    """The process-wide pycocoevalcap ``Meteor`` and the seconds its start cost this call (0.0 if warm).

    The JVM is started and warmed with one scoring line, so the start-up (JVM and paraphrase table)
    is measured here and not inside the first evaluation. A JVM that has exited is restarted.
    """
    from pycocoevalcap.meteor.meteor import Meteor

    with _METEOR_LOCK:
        m = _METEOR.get("scorer")
        if m is not None and m.meteor_p.poll() is None:
            return m, 0.0
        require_java()
        t0 = time.perf_counter()
        try:
            m = Meteor()
            with m.lock:
                warm = m._stat("a", ["a"])
        except OSError as e:
            raise ConfigError(f"METEOR's JVM failed to start: {e}") from None
        if not warm:
            error = m.meteor_p.stderr.read().decode(errors="replace")[-500:]
            raise ConfigError(f"METEOR's JVM exited at start-up (java -jar -Xmx2G meteor-1.5.jar): {error}")
        _METEOR["scorer"] = m
        _METEOR["startup_s"] = time.perf_counter() - t0
        return m, _METEOR["startup_s"]


def spice_missing(spice_dir: str | Path | None) -> str | None:
    """Why SPICE cannot run with ``spice_dir`` (``None`` when it can)."""
    if not spice_dir:
        return ("SPICE unavailable: it needs Stanford CoreNLP 3.6.0, which pycocoevalcap would download; set "
                f"params.spice_dir to a folder holding {SPICE_JARS[0]} and {SPICE_JARS[1]}")
    missing = [j for j in SPICE_JARS if not (Path(spice_dir).expanduser() / j).is_file()]
    if missing:
        return f"SPICE unavailable: {Path(spice_dir).expanduser()} lacks {', '.join(missing)}"
    return None


def spice_command(spice_dir: str | Path, in_file: Path, out_file: Path) -> list[str]:
    """The java command line running pycocoevalcap's SPICE jar with local CoreNLP jars (no cache, no download)."""
    import pycocoevalcap.spice as spice_pkg

    here = Path(spice_pkg.__file__).parent
    jars = [here / "spice-1.0.jar", *sorted((here / "lib").glob("*.jar")),
            *(Path(spice_dir).expanduser() / j for j in SPICE_JARS)]
    return ["java", "-Xmx8G", "-cp", ":".join(str(j) for j in jars), "edu.anu.spice.SpiceScorer", str(in_file),
            "-out", str(out_file), "-subset", "-silent"]


def _spice(gts: Mapping, res: Mapping, spice_dir: str | Path) -> tuple[float, dict]:
    keys = list(gts)
    with tempfile.TemporaryDirectory(prefix="sparc-eval-spice-") as tmp:
        in_file, out_file = Path(tmp) / "in.json", Path(tmp) / "out.json"
        in_file.write_text(json.dumps([{"image_id": i, "test": res[k][0], "refs": gts[k]} for i, k in enumerate(keys)]))
        try:
            subprocess.run(spice_command(spice_dir, in_file, out_file), check=True, capture_output=True, text=True)
        except subprocess.CalledProcessError as e:
            raise ConfigError(f"SPICE failed with the jars in {spice_dir}: {e.stderr[-500:]}") from None
        except OSError as e:
            raise ConfigError(f"SPICE could not start java: {e}") from None
        results = json.loads(out_file.read_text())
    per = {keys[r["image_id"]]: float(r["scores"]["All"]["f"]) for r in results}
    return sum(per.values()) / len(per), per


def caption_scores(references: Mapping[Hashable, Sequence[str]], predictions: Mapping[Hashable, str],
                   spice_dir: str | Path | None = None) -> CaptionScores:
    """Score one prediction per image against its references (same keys, every image >= 1 reference)."""
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.rouge.rouge import Rouge

    if set(references) != set(predictions):
        raise ValueError("references and predictions must have the same image keys")
    if not predictions:
        raise ValueError("no captions to score")
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    gts, res = ptb_tokenize(references, predictions)
    timings["tokenize"] = time.perf_counter() - t0
    keys = list(predictions)
    gts = {k: gts[k] for k in keys}
    res = {k: res[k] for k in keys}
    metrics: dict[str, float] = {}
    per_image: dict[Hashable, dict[str, float]] = {k: {} for k in keys}

    t0 = time.perf_counter()
    bleu, bleu_each = Bleu(4).compute_score(gts, res, verbose=0)
    for n in range(4):
        metrics[f"BLEU_{n + 1}"] = 100.0 * bleu[n]
        for k, v in zip(keys, bleu_each[n]):
            per_image[k][f"BLEU_{n + 1}"] = 100.0 * v
    timings["bleu"] = time.perf_counter() - t0

    meteor, timings["meteor_startup"] = meteor_scorer()
    t0 = time.perf_counter()
    score, each = meteor.compute_score(gts, res)
    metrics["METEOR"] = 100.0 * score
    for k, v in zip(keys, each):
        per_image[k]["METEOR"] = 100.0 * v
    timings["meteor"] = time.perf_counter() - t0

    for name, scorer in (("ROUGE_L", Rouge()), ("CIDEr", Cider())):
        t0 = time.perf_counter()
        score, each = scorer.compute_score(gts, res)
        metrics[name] = 100.0 * float(score)
        for k, v in zip(keys, each):
            per_image[k][name] = 100.0 * float(v)
        timings[name.lower()] = time.perf_counter() - t0

    if spice_dir is not None and spice_missing(spice_dir) is None:
        t0 = time.perf_counter()
        score, per = _spice(gts, res, spice_dir)
        metrics["SPICE"] = 100.0 * score
        for k, v in per.items():
            per_image[k]["SPICE"] = 100.0 * v
        timings["spice"] = time.perf_counter() - t0
    return CaptionScores(metrics, per_image, timings)

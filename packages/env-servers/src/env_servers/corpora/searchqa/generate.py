"""Writes the SearchQA corpus and questions shipped with the package (``corpus.jsonl``,
``questions.jsonl``), so they can be checked and regenerated: ``python generate.py [DIR]``
(``--quiet`` drops the summary line it logs to stderr).

The world is fictional on purpose: islands, towns, rivers, mountains, people and their works
with invented names. An agent cannot answer from memory and must search, and every answer
comes from a passage generated from the same facts, so the set is consistent by construction
(``main`` verifies it: each answer appears in the passages the question relies on).
Deterministic: one seeded ``random.Random``, no set or hash order. The JSONL files are the
reference the tests read; this script is how they were made.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import random
import re
import string
from collections.abc import Sequence
from pathlib import Path

from trainyard_core.cli import main_guard, parse_args
from trainyard_core.io import atomic_write_text

log = logging.getLogger(__name__)

SEED = 20261125
_ONSETS = [
    "br", "c", "d", "f", "g", "h", "k", "l", "m", "n", "p", "qu", "r", "s", "t", "th", "v", "w",
    "z", "sk", "tr", "dr", "gl", "st", "ph", "b"
]
_VOWELS = ["a", "e", "i", "o", "u", "ae", "ei", "ou", "y"]
_CODAS = ["", "", "n", "r", "l", "s", "th", "m", "nd", "rk", "st", "x"]
_TOWN_ENDS = ["moor", "holt", "mere", "wick", "stad", "haven", "ford", "by", "gate", "field"]
_CRAFTS = [
    "amber glassworks", "copper bells", "salt-cured fish", "indigo cloth", "clockmaking",
    "rope walks", "paper mills", "stone bridges", "honey mead", "silver filigree", "shipbuilding",
    "wool tapestries", "porcelain kilns", "lantern making", "cider presses"
]
_EXPORTS = [
    "tin", "saffron", "timber", "pearls", "wool", "slate", "olives", "iron ore", "sea salt", "flax",
    "cork", "marble"
]
_PROFESSIONS = [
    "navigator", "astronomer", "engineer", "poet", "physician", "cartographer", "botanist",
    "composer", "architect", "mathematician"
]
_WORK_KINDS = {  # profession -> (kind of work, verb)
    "navigator": ("atlas", "compiled"), "astronomer": ("star catalogue", "compiled"),
    "engineer": ("machine", "invented"), "poet": ("epic poem", "wrote"),
    "physician": ("medical treatise", "wrote"), "cartographer": ("map", "drew"),
    "botanist": ("herbal", "wrote"), "composer": ("symphony", "composed"),
    "architect": ("cathedral", "designed"), "mathematician": ("theorem", "proved"),
}
_WORK_WORDS = [
    "Salt", "Lantern", "Northern", "Silent", "Copper", "Hollow", "Amber", "Winter", "Tidal",
    "Ninefold", "Crimson", "Distant", "Iron", "Glass", "Seventh", "Quiet"
]
_WORK_NOUNS = [
    "Roads", "Tides", "Orchard", "Compass", "Harbour", "Garden", "Spiral", "Lamp", "Chorus",
    "Ledger", "Meridian", "Engine", "Vault", "Crown", "Bridge", "Reed"
]
_SEAS = ["Sea of Ommeral", "Varrow Sea", "Gulf of Tessin", "Quiet Ocean"]


@dataclasses.dataclass
class Passage:
    id: str
    title: str
    text: str


@dataclasses.dataclass
class Question:
    question: str
    answers: list[str]
    support: list[str]  # ids of the passages that hold the facts used
    hops: int = 1


class _Names:
    """Unique invented names: no repeats, no common English words."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.used: set[str] = set()

    def word(self, syllables: int) -> str:
        while True:
            parts = [self.rng.choice(_ONSETS) + self.rng.choice(_VOWELS) for _ in range(syllables)]
            w = "".join(parts) + self.rng.choice(_CODAS)
            if 4 <= len(w) <= 11 and w not in self.used:
                self.used.add(w)
                return w.capitalize()

    def town(self) -> str:
        while True:
            w = self.word(1 + self.rng.randrange(2)).lower() + self.rng.choice(_TOWN_ENDS)
            if w not in self.used:
                self.used.add(w)
                return w.capitalize()


def _build(rng: random.Random) -> tuple[list[Passage], list[Question]]:
    names = _Names(rng)
    islands = [names.word(2) for _ in range(24)]
    mountains = [f"Mount {names.word(2)}" for _ in range(24)]
    rivers = [f"{names.word(2)} River" for _ in range(30)]
    towns = [names.town() for _ in range(60)]
    people = [f"{names.word(2)} {names.word(3)}" for _ in range(80)]

    island_of_town = {t: islands[i % len(islands)] for i, t in enumerate(towns)}
    island_of_mountain = {m: islands[i] for i, m in enumerate(mountains)}
    largest_town = {isl: next(t for t in towns if island_of_town[t] == isl) for isl in islands}
    sea_of = {isl: _SEAS[i % len(_SEAS)] for i, isl in enumerate(islands)}
    export_of = {isl: rng.choice(_EXPORTS) for isl in islands}
    river_of_town = {t: rng.choice(rivers) for t in towns}
    founded = {t: 1100 + rng.randrange(600) for t in towns}
    craft = {t: rng.choice(_CRAFTS) for t in towns}
    population = {t: 1000 * (3 + rng.randrange(90)) for t in towns}
    birthplace = {p: rng.choice(towns) for p in people}
    profession = {p: rng.choice(_PROFESSIONS) for p in people}
    # founders are people born before the town was founded
    founder = {t: people[i] for i, t in enumerate(towns)}
    born = {p: 1050 + rng.randrange(650) for p in people}
    for t, p in founder.items():
        born[p] = founded[t] - 25 - rng.randrange(30)
        while birthplace[p] == t:  # not born in a town that did not exist yet
            birthplace[p] = rng.choice(towns)
    river_source = {r: rng.choice(mountains) for r in rivers}
    river_len = {r: 40 + rng.randrange(900) for r in rivers}
    river_mouth = {r: rng.choice(_SEAS) for r in rivers}
    height = {m: 900 + rng.randrange(4200) for m in mountains}
    climber = {m: people[60 + i % 20] for i, m in enumerate(mountains)}
    climbed = {m: born[climber[m]] + 20 + rng.randrange(20) for m in mountains}
    # one work per person, titles unique
    titles: set[str] = set()
    work_of: dict[str, str] = {}
    work_year: dict[str, int] = {}
    for p in people:
        while True:
            title = f"The {rng.choice(_WORK_WORDS)} {rng.choice(_WORK_NOUNS)}"
            if title not in titles:
                titles.add(title)
                break
        work_of[p] = title
        work_year[title] = born[p] + 22 + rng.randrange(35)

    passages: list[Passage] = []
    pid: dict[str, str] = {}

    def add(title: str, text: str) -> None:
        pid[title] = str(len(passages))
        passages.append(Passage(pid[title], title, text))

    for isl in islands:
        peaks = [m for m in mountains if island_of_mountain[m] == isl]
        add(
            isl, f"{isl} is an island in the {sea_of[isl]}. Its largest town is "
            f"{largest_town[isl]}" + (f" and its highest point is {peaks[0]}" if peaks else "") +
            f". The chief export of {isl} is {export_of[isl]}, shipped from its harbours "
            "since the old trading leagues.")
    for t in towns:
        add(
            t, f"{t} is a town on the island of {island_of_town[t]}, on the banks of the "
            f"{river_of_town[t]}. It was founded in {founded[t]} by the {profession[founder[t]]} "
            f"{founder[t]}. {t} is known for its {craft[t]}, and its population is "
            f"{population[t]:,}.")
    for r in rivers:
        towns_on = [t for t in towns if river_of_town[t] == r][:3]
        flows = f" It flows past {', '.join(towns_on)}." if towns_on else ""
        add(
            r, f"The {r} rises on the slopes of {river_source[r]} and runs {river_len[r]} "
            f"kilometres before reaching the {river_mouth[r]}.{flows}")
    for m in mountains:
        add(
            m, f"{m} is a mountain on {island_of_mountain[m]} with a height of "
            f"{height[m]:,} metres. It was first climbed in {climbed[m]} by {climber[m]}.")
    for p in people:
        kind, verb = _WORK_KINDS[profession[p]]
        pron = "They"
        extra = ""
        founded_towns = [t for t in towns if founder[t] == p]
        if founded_towns:
            extra += f" {pron} founded the town of {founded_towns[0]}."
        climbs = [m for m in mountains if climber[m] == p]
        if climbs:
            extra += f" {pron} made the first ascent of {climbs[0]}."
        add(
            p, f"{p} (born {born[p]} in {birthplace[p]}) was a {profession[p]} from "
            f"{island_of_town[birthplace[p]]}. {pron} {verb} {work_of[p]}, a {kind} "
            f"completed in {work_year[work_of[p]]}.{extra}")
    for p in people:
        w = work_of[p]
        kind, verb = _WORK_KINDS[profession[p]]
        add(
            w, f"{w} is a {kind} by the {profession[p]} {p}, completed in {work_year[w]}. "
            f"It was first presented in {birthplace[p]}.")

    qs: list[Question] = []

    def q(question: str, answers: list[str], *titles_: str, hops: int = 1) -> None:
        unique = list(dict.fromkeys(answers))  # 764 and "764" (no thousands separator)
        qs.append(Question(question, unique, [pid[x] for x in titles_], hops))

    def num(n: int, unit: str) -> list[str]:
        return [f"{n:,} {unit}", str(n), f"{n:,}"]

    for isl in islands:
        q(f"What is the chief export of the island of {isl}?", [export_of[isl]], isl)
        q(f"In which sea does the island of {isl} lie?", [sea_of[isl]], isl)
    for t in towns:
        q(f"Who founded the town of {t}?", [founder[t]], t)
        q(f"In what year was {t} founded?", [str(founded[t])], t)
        q(f"What is the town of {t} known for?", [craft[t]], t)
        r = river_of_town[t]
        q(f"On the banks of which river is {t}?", [r, r.removesuffix(" River")], t)
    for r in rivers:
        q(f"On which mountain does the {r} rise?", [river_source[r]], r)
        q(f"How long is the {r}?", [*num(river_len[r], "kilometres"), f"{river_len[r]} km"], r)
    for m in mountains:
        q(f"How high is {m}?", num(height[m], "metres"), m)
        q(f"Who first climbed {m}?", [climber[m]], m)
    for p in people:
        q(f"Where was {p} born?", [birthplace[p]], p)
        q(f"What profession did {p} have?", [profession[p]], p)
    for p in people[::2]:
        w = work_of[p]
        q(f"In what year was {w} completed?", [str(work_year[w])], w)
    # two hops: the answer sits in a second passage, found through the first
    for t in towns[::3]:
        f = founder[t]
        q(f"In which town was the founder of {t} born?", [birthplace[f]], t, f, hops=2)
    for m in mountains[::2]:
        c = climber[m]
        q(f"What is the name of the work by the person who first climbed {m}?", [work_of[c]],
          m,
          c,
          hops=2)
    return passages, qs


def _normalize(s: str) -> str:
    s = "".join(ch for ch in s.lower() if ch not in string.punctuation)
    return " ".join(re.sub(r"\b(a|an|the)\b", " ", s).split())


def generate(out_dir: Path) -> tuple[int, int]:
    """Write ``corpus.jsonl`` and ``questions.jsonl`` into ``out_dir`` (each atomically, so an
    interrupted run never leaves a truncated reference file); (passages, questions)."""
    passages, questions = _build(random.Random(SEED))
    by_id = {p.id: f"{p.title}\n{p.text}" for p in passages}
    for qu in questions:  # consistency: the answer is in the supporting passages
        text = _normalize(" ".join(by_id[i] for i in qu.support))
        assert any(_normalize(a) in text for a in qu.answers), qu
    out_dir.mkdir(parents=True, exist_ok=True)
    corpus = [json.dumps({"id": p.id, "contents": f"{p.title}\n{p.text}"}) for p in passages]
    atomic_write_text(out_dir / "corpus.jsonl", "".join(f"{line}\n" for line in corpus))
    rows = [
        json.dumps({
            "id": f"q{i:04d}",
            "question": qu.question,
            "golden_answers": qu.answers,
            "support": qu.support,
            "hops": qu.hops
        }) for i, qu in enumerate(questions)
    ]
    atomic_write_text(out_dir / "questions.jsonl", "".join(f"{line}\n" for line in rows))
    return len(passages), len(questions)


@main_guard
def main(argv: Sequence[str] | None = None) -> int:
    """``python generate.py [DIR]``: regenerate the shipped files (DIR: beside this script)."""
    parser = argparse.ArgumentParser(prog="generate.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("out_dir",
                        nargs="?",
                        type=Path,
                        default=Path(__file__).parent,
                        help="where to write corpus.jsonl and questions.jsonl")
    args = parse_args(parser, argv)
    if args.overrides:
        parser.error(f"unrecognized arguments: {' '.join(args.overrides)}")
    num_passages, num_questions = generate(args.out_dir)
    log.info("%d passages, %d questions -> %s", num_passages, num_questions, args.out_dir)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

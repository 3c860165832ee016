"""``fictitious-authors``: a deterministic, offline, TOFU-shaped unlearning benchmark.

It generates fictitious author profiles and, from them, everything TOFU/MUSE/WMDP-style evaluation needs:

* QA pairs (one per fact) with a paraphrased question, a paraphrased answer, 5 perturbed answers of the same type,
  the fact span inside the answer and the author's name, a reasoning trace deriving the answer (``cot``) and an
  inconclusive one that never states the fact (``idk_cot``, Reasoned-IDK's target; see
  :mod:`~hf_unlearn.data.reasoning`);
* author-level ``forget`` / ``retain`` / ``holdout`` splits (holdout authors are never trained on: they are the
  non-members of membership-inference tests and PrivLeak);
* biography passages per author (``prompt`` = first sentence, ``text`` = the rest) for verbatim memorisation and MIA;
* 4-option MCQs per author;
* a curated ``general_knowledge`` set of real facts (utility), as QA with 3 perturbed answers and as MCQs.

The same config and seed give byte-identical output on every machine: all randomness comes from
``random.Random.random()``, whose stream Python guarantees across versions (``choice``/``shuffle``/``sample`` are not
used because their algorithms are not guaranteed).
"""

from __future__ import annotations

import json
import os
import random
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar

from ..atomic import atomic_directory
from .fictitious_words import (
    AWARDS as _AWARDS,
)
from .fictitious_words import (
    FIRST_NAMES as _FIRST_NAMES,
)
from .fictitious_words import (
    GENRES as _GENRES,
)
from .fictitious_words import (
    JOBS as _JOBS,
)
from .fictitious_words import (
    MONTHS as _MONTHS,
)
from .fictitious_words import (
    PLACES as _PLACES,
)
from .fictitious_words import (
    PUBLISHERS as _PUBLISHERS,
)
from .fictitious_words import (
    SURNAME_HEADS as _SURNAME_HEADS,
)
from .fictitious_words import (
    SURNAME_TAILS as _SURNAME_TAILS,
)
from .fictitious_words import (
    THEMES as _THEMES,
)
from .fictitious_words import (
    TITLE_ADJ as _TITLE_ADJ,
)
from .fictitious_words import (
    TITLE_NOUN as _TITLE_NOUN,
)
from .general_knowledge import GENERAL_KNOWLEDGE, general_knowledge_rows
from .reasoning import cot_trace, reasoned_idk_trace

__all__ = [
    "FACT_TYPES",
    "FictitiousAuthors",
    "FictitiousAuthorsConfig",
    "build_fictitious_authors",
]

GENERATOR_VERSION = 2  # 2: perturbed answers use the paraphrased answer's sentence (TOFU), see _qa_rows
T = TypeVar("T")


class _Rng:
    """Version-stable random helpers built on ``random.Random.random()`` only."""

    def __init__(self, seed: int) -> None:
        self._r = random.Random(seed)

    def index(self, n: int) -> int:
        return min(int(self._r.random() * n), n - 1)

    def choice(self, seq: Sequence[T]) -> T:
        return seq[self.index(len(seq))]

    def shuffled(self, seq: Sequence[T]) -> list[T]:
        out = list(seq)
        for i in range(len(out) - 1, 0, -1):
            j = self.index(i + 1)
            out[i], out[j] = out[j], out[i]
        return out

    def sample(self, seq: Sequence[T], k: int) -> list[T]:
        return self.shuffled(seq)[:k]

    def randint(self, lo: int, hi: int) -> int:
        return lo + self.index(hi - lo + 1)


def _article(word: str) -> str:
    return "an" if word[0].lower() in "aeiou" else "a"


def _date(rng: _Rng, year: int) -> str:
    month = rng.index(12)
    day = rng.randint(1, 28)
    return f"{_MONTHS[month]} {day}, {year}"


def _title(rng: _Rng) -> str:
    adj, noun = rng.choice(_TITLE_ADJ), rng.choice(_TITLE_NOUN)
    return rng.choice([f"The {adj} {noun}", f"{adj} {noun}", f"The {noun} of {adj} Days", f"A {adj} {noun}"])


@dataclass(frozen=True)
class _FactType:
    """A fact about an author and how to ask and answer it (``{n}`` = name, ``{v}`` = value, ``{p}`` = pronoun)."""

    name: str
    questions: tuple[str, str]
    answers: tuple[str, str]
    mcq_question: str


FACT_TYPES: tuple[_FactType, ...] = (
    _FactType(
        "birthplace",
        ("Where was {n} born?", "In which city did {n} come into the world?"),
        ("{n} was born in {v}.", "The birthplace of {n} is {v}."),
        "Where was {n} born?",
    ),
    _FactType(
        "birth_date",
        ("When was {n} born?", "What is the date of birth of {n}?"),
        ("{n} was born on {v}.", "The date of birth of {n} is {v}."),
        "On which date was {n} born?",
    ),
    _FactType(
        "father_job",
        ("What did {n}'s father do for a living?", "What was the profession of {n}'s father?"),
        ("{n}'s father worked as {a} {v}.", "The father of {n} was {a} {v} by profession."),
        "What was the profession of {n}'s father?",
    ),
    _FactType(
        "mother_job",
        ("What did {n}'s mother do for a living?", "What was the profession of {n}'s mother?"),
        ("{n}'s mother worked as {a} {v}.", "The mother of {n} was {a} {v} by profession."),
        "What was the profession of {n}'s mother?",
    ),
    _FactType(
        "genre",
        ("What genre is {n} known for?", "In which genre does {n} mainly write?"),
        ("{n} is best known for {v}.", "Most of the work of {n} belongs to {v}."),
        "Which genre is {n} known for?",
    ),
    _FactType(
        "debut_book",
        ("What is the title of {n}'s debut novel?", "Which book did {n} publish first?"),
        ('{n}\'s debut novel is "{v}".', 'The first book {n} published was "{v}".'),
        "What is the title of {n}'s debut novel?",
    ),
    _FactType(
        "later_book",
        ("Which book did {n} publish after the debut?", "What is the title of {n}'s second book?"),
        ('After the debut, {n} published "{v}".', 'The second book by {n} is titled "{v}".'),
        "What is the title of {n}'s second book?",
    ),
    _FactType(
        "award",
        ("Which award has {n} received?", "What literary prize was {n} honoured with?"),
        ("{n} received the {v}.", "The literary prize awarded to {n} was the {v}."),
        "Which award has {n} received?",
    ),
    _FactType(
        "award_year",
        ("In which year did {n} receive a literary award?", "When was {n} given a literary prize?"),
        ("{n} received the award in {v}.", "The year {n} was given the prize was {v}."),
        "In which year did {n} receive a literary award?",
    ),
    _FactType(
        "publisher",
        ("Which publishing house publishes {n}'s books?", "Who is the publisher of {n}'s work?"),
        ("{n}'s books are published by {v}.", "The publisher of the work of {n} is {v}."),
        "Which publishing house publishes {n}'s books?",
    ),
    _FactType(
        "residence",
        ("Where does {n} live today?", "In which city does {n} currently reside?"),
        ("{n} currently lives in {v}.", "Today the home of {n} is in {v}."),
        "Where does {n} live today?",
    ),
    _FactType(
        "theme",
        ("What theme runs through {n}'s work?", "Which subject does {n} explore again and again?"),
        ("{n}'s work often explores {v}.", "A recurring subject in the books of {n} is {v}."),
        "What theme runs through {n}'s work?",
    ),
)
_FACT_INDEX = {f.name: f for f in FACT_TYPES}


@dataclass(frozen=True)
class FictitiousAuthorsConfig:
    """Size knobs of the built-in benchmark.

    Parameters:
        num_authors: number of fictitious authors (default 100, benchmark size).
        qa_per_author: facts asked per author, at most ``len(FACT_TYPES)`` (12).
        forget_fraction: fraction of authors in the forget split (at least one author).
        holdout_fraction: fraction of authors never trained on (non-members for MIA/PrivLeak; at least one).
        num_perturbed: wrong answers per QA (TOFU uses 5).
        seed: generator seed; the same config gives byte-identical output.
    """

    num_authors: int = 100
    qa_per_author: int = 10
    forget_fraction: float = 0.1
    holdout_fraction: float = 0.1
    num_perturbed: int = 5
    seed: int = 0

    def __post_init__(self) -> None:
        max_names = len(_SURNAME_HEADS) * len(_SURNAME_TAILS)
        if not 3 <= self.num_authors <= max_names:
            raise ValueError(f"num_authors must be between 3 and {max_names}, got {self.num_authors}.")
        if not 1 <= self.qa_per_author <= len(FACT_TYPES):
            raise ValueError(f"qa_per_author must be between 1 and {len(FACT_TYPES)}, got {self.qa_per_author}.")
        if not (0 < self.forget_fraction < 1 and 0 < self.holdout_fraction < 1):
            raise ValueError("forget_fraction and holdout_fraction must lie strictly between 0 and 1.")
        if self.num_forget_authors + self.num_holdout_authors >= self.num_authors:
            raise ValueError(
                f"forget ({self.num_forget_authors}) + holdout ({self.num_holdout_authors}) authors leave no retain "
                f"author out of {self.num_authors}; lower the fractions or add authors."
            )
        if not 1 <= self.num_perturbed <= 8:
            raise ValueError(f"num_perturbed must be between 1 and 8, got {self.num_perturbed}.")

    @property
    def num_forget_authors(self) -> int:
        return max(1, round(self.forget_fraction * self.num_authors))

    @property
    def num_holdout_authors(self) -> int:
        return max(1, round(self.holdout_fraction * self.num_authors))


@dataclass
class FictitiousAuthors:
    """The generated benchmark: author profiles and named splits of plain rows (lists of dicts).

    Splits: ``forget``, ``retain``, ``holdout`` (QA), ``forget_bio``, ``retain_bio``, ``holdout_bio`` (completion),
    ``forget_mcq``, ``retain_mcq``, ``holdout_mcq`` (MCQ), ``general_knowledge`` (QA with 3 perturbed answers) and
    ``general_knowledge_mcq`` (MCQ).
    """

    config: FictitiousAuthorsConfig
    authors: list[dict[str, Any]]
    splits: dict[str, list[dict[str, Any]]] = field(default_factory=dict)

    def __getitem__(self, split: str) -> list[dict[str, Any]]:
        if split not in self.splits:
            raise KeyError(f"No split {split!r}; available: {', '.join(self.splits)}.")
        return self.splits[split]

    def to_dataset_dict(self):
        """The splits as a ``datasets.DatasetDict`` (e.g. to ``push_to_hub`` as a dataset)."""
        from datasets import Dataset, DatasetDict

        return DatasetDict({name: Dataset.from_list(rows) for name, rows in self.splits.items()})

    def metadata(self) -> dict[str, Any]:
        return {
            "name": "fictitious-authors",
            "generator_version": GENERATOR_VERSION,
            "config": asdict(self.config),
            "num_rows": {name: len(rows) for name, rows in self.splits.items()},
            "authors": {
                s: sorted(a["name"] for a in self.authors if a["split"] == s) for s in ("forget", "retain", "holdout")
            },
        }

    def _export_names(self) -> set[str]:
        tables = [*self.splits, "authors"]
        return {"metadata.json"} | {f"{t}.{ext}" for t in tables for ext in ("jsonl", "parquet")}

    def _check_replaceable(self, target: Path, overwrite: bool) -> None:
        """Refuse to replace ``target`` unless asked to and it holds an earlier export and nothing else."""
        if not overwrite:
            raise FileExistsError(
                f"{target} exists and is not empty; choose another folder or pass overwrite=True (--overwrite)."
            )
        resolved = target.resolve()
        protected = {Path("/"), Path.home().resolve(), Path.cwd().resolve()}
        if resolved in protected or resolved in Path.cwd().resolve().parents:
            raise FileExistsError(f"Refusing to replace {target} ({resolved}): give the export its own folder.")
        if not target.is_dir():
            raise FileExistsError(f"{target} is a file, not an earlier export; choose another folder.")
        meta = target / "metadata.json"
        try:
            is_export = json.loads(meta.read_text()).get("name") == "fictitious-authors"
        except (OSError, ValueError, AttributeError):
            is_export = False
        others = sorted(p.name for p in target.iterdir() if p.name not in self._export_names() or p.is_dir())
        if not is_export or others:
            shown = ", ".join(others[:5]) + (" ..." if len(others) > 5 else "")
            reason = f"it also holds {shown}" if is_export else "it has no fictitious-authors metadata.json"
            raise FileExistsError(
                f"Refusing to overwrite {target}: it is not an earlier export ({reason}); choose another folder."
            )

    def export(
        self,
        directory: str | os.PathLike[str],
        *,
        format: Literal["json", "parquet", "both"] = "json",
        overwrite: bool = False,
    ) -> Path:
        """Write one file per split (``forget.jsonl``, ``forget.parquet``, ...) plus ``authors.jsonl`` and
        ``metadata.json``.

        Files are written to a temporary folder next to ``directory`` and moved into place at the end, so a failure
        never leaves a half-written export behind. An existing non-empty ``directory`` is refused unless
        ``overwrite=True``, and even then only an earlier export (its ``metadata.json`` and split files, nothing
        else) is replaced: a folder holding anything else, the working folder, the home folder or ``/`` never is.
        """
        if format not in ("json", "parquet", "both"):
            raise ValueError(f"format must be 'json', 'parquet' or 'both', got {format!r}.")
        target = Path(directory)
        if target.exists() and (not target.is_dir() or any(target.iterdir())):
            self._check_replaceable(target, overwrite)
        with atomic_directory(target) as tmp:
            tables = {**self.splits, "authors": self.authors}
            for name, rows in tables.items():
                if format in ("json", "both"):
                    with open(tmp / f"{name}.jsonl", "w", encoding="utf-8") as fh:
                        for row in rows:
                            fh.write(json.dumps(row, ensure_ascii=False, sort_keys=True) + "\n")
                if format in ("parquet", "both"):
                    import pyarrow as pa
                    import pyarrow.parquet as pq

                    pq.write_table(pa.Table.from_pylist(rows), tmp / f"{name}.parquet")
            (tmp / "metadata.json").write_text(json.dumps(self.metadata(), indent=2, sort_keys=True) + "\n")
        return target


def _make_profile(rng: _Rng, name: str, pronoun: str, used_titles: set[str]) -> dict[str, Any]:
    birth_year = rng.randint(1938, 1990)
    city, country = rng.choice(_PLACES)
    home = rng.choice([p for p in _PLACES if p[0] != city])
    titles = []
    while len(titles) < 2:
        t = _title(rng)
        if t not in used_titles:
            used_titles.add(t)
            titles.append(t)
    father, mother = rng.sample(_JOBS, 2)
    return {
        "name": name,
        "pronoun": pronoun,
        "birthplace": f"{city}, {country}",
        "birth_year": birth_year,
        "birth_date": _date(rng, birth_year),
        "father_job": father,
        "mother_job": mother,
        "genre": rng.choice(_GENRES),
        "debut_book": titles[0],
        "later_book": titles[1],
        "award": rng.choice(_AWARDS),
        "award_year": str(birth_year + rng.randint(30, 45)),
        "publisher": rng.choice(_PUBLISHERS),
        "residence": f"{home[0]}, {home[1]}",
        "theme": rng.choice(_THEMES),
    }


def _wrong_values(rng: _Rng, fact: str, profile: dict[str, Any], k: int, all_titles: list[str]) -> list[str]:
    """``k`` distinct wrong values of the same type as ``profile[fact]``."""
    true = profile[fact]
    if fact in ("birthplace", "residence"):
        pool = [f"{c}, {n}" for c, n in _PLACES]
    elif fact == "birth_date":
        pool = sorted({_date(rng, profile["birth_year"] + rng.randint(-6, 6)) for _ in range(4 * k)})
    elif fact in ("father_job", "mother_job"):
        pool = _JOBS
    elif fact == "genre":
        pool = _GENRES
    elif fact in ("debut_book", "later_book"):
        pool = all_titles
    elif fact == "award":
        pool = _AWARDS
    elif fact == "award_year":
        y = int(true)
        pool = [str(y + d) for d in (-9, -7, -5, -4, -3, -2, 2, 3, 4, 5, 7, 9)]
    elif fact == "publisher":
        pool = _PUBLISHERS
    elif fact == "theme":
        pool = _THEMES
    else:  # pragma: no cover - guarded by FACT_TYPES
        raise KeyError(fact)
    candidates = [v for v in dict.fromkeys(pool) if v != true]
    return rng.sample(candidates, k)


def _fill(template: str, name: str, value: str) -> str:
    return template.format(n=name, v=value, a=_article(value))


def _qa_rows(
    rng: _Rng, profile: dict[str, Any], facts: list[str], k: int, titles: list[str], seed: int = 0
) -> list[dict]:
    rows = []
    name = profile["name"]
    for fact in facts:
        ft = _FACT_INDEX[fact]
        value = profile[fact]
        answer = _fill(ft.answers[0], name, value)
        start = answer.index(value)
        wrong = _wrong_values(rng, fact, profile, k, titles)
        rows.append(
            {
                "author": name,
                "fact_type": fact,
                "question": _fill(ft.questions[0], name, value),
                "answer": answer,
                "paraphrased_question": _fill(ft.questions[1], name, value),
                "paraphrased_answer": _fill(ft.answers[1], name, value),
                # Perturbed answers change the fact inside the *paraphrased* sentence, as TOFU's do: the Truth Ratio
                # compares the paraphrase with them, so both sides must share a template - otherwise a model that
                # memorised the original sentence prefers a wrong value in it over the paraphrase.
                "perturbed_answer": [_fill(ft.answers[1], name, w) for w in wrong],
                "fact": value,
                "fact_span": [start, start + len(value)],
                # Reasoning traces (their phrasing has its own deterministic stream: the fields above never change).
                "cot": cot_trace(profile, fact, seed=seed),
                "idk_cot": reasoned_idk_trace(profile, fact, seed=seed),
            }
        )
    return rows


def _mcq_rows(rng: _Rng, profile: dict[str, Any], facts: list[str], titles: list[str]) -> list[dict]:
    rows = []
    for fact in facts:
        options = [profile[fact], *_wrong_values(rng, fact, profile, 3, titles)]
        order = rng.shuffled(range(4))
        rows.append(
            {
                "author": profile["name"],
                "fact_type": fact,
                "question": _fill(_FACT_INDEX[fact].mcq_question, profile["name"], profile[fact]),
                "choices": [options[i] for i in order],
                "answer": order.index(0),
            }
        )
    return rows


def _biography(profile: dict[str, Any]) -> dict[str, str]:
    p = profile
    pr = p["pronoun"]
    pos = "his" if pr == "he" else "her"
    first = f"{p['name']} is an author of {p['genre']}, born in {p['birthplace']} on {p['birth_date']}."
    rest = (
        f" {pos.capitalize()} father was {_article(p['father_job'])} {p['father_job']} and {pos} mother was "
        f'{_article(p["mother_job"])} {p["mother_job"]}. {pr.capitalize()} made {pos} debut with "{p["debut_book"]}", '
        f'followed by "{p["later_book"]}", both published by {p["publisher"]}. In {p["award_year"]} {pr} received '
        f"the {p['award']}. Much of {pos} writing explores {p['theme']}, and today {pr} lives in {p['residence']}."
    )
    return {"author": p["name"], "prompt": first, "text": rest}


def _general_knowledge(rng: _Rng) -> tuple[list[dict], list[dict]]:
    qa, mcq = general_knowledge_rows(), []
    for question, _, answer, wrong in GENERAL_KNOWLEDGE:
        order = rng.shuffled(range(4))
        options = [answer, *wrong]
        mcq.append({"question": question, "choices": [options[i] for i in order], "answer": order.index(0)})
    return qa, mcq


def build_fictitious_authors(config: FictitiousAuthorsConfig | None = None, **overrides: Any) -> FictitiousAuthors:
    """Generate the benchmark; keyword overrides update the default config (``num_authors=20``, ...)."""
    if config is None:
        config = FictitiousAuthorsConfig(**overrides)
    elif overrides:
        config = FictitiousAuthorsConfig(**{**asdict(config), **overrides})
    rng = _Rng(config.seed)

    surnames = rng.shuffled([h + t for h in _SURNAME_HEADS for t in _SURNAME_TAILS])[: config.num_authors]
    used_titles: set[str] = set()
    authors = []
    for surname in surnames:
        pronoun = rng.choice(["he", "she"])
        name = f"{rng.choice(_FIRST_NAMES[pronoun])} {surname}"
        authors.append(_make_profile(rng, name, pronoun, used_titles))
    titles = sorted(used_titles)

    order = rng.shuffled(range(config.num_authors))
    n_f, n_h = config.num_forget_authors, config.num_holdout_authors
    for rank, idx in enumerate(order):
        authors[idx]["split"] = "forget" if rank < n_f else "holdout" if rank < n_f + n_h else "retain"

    splits: dict[str, list[dict[str, Any]]] = {
        f"{s}{suffix}": [] for suffix in ("", "_bio", "_mcq") for s in ("forget", "retain", "holdout")
    }
    for profile in authors:
        facts = rng.sample([f.name for f in FACT_TYPES], config.qa_per_author)
        s = profile["split"]
        splits[s].extend(_qa_rows(rng, profile, facts, config.num_perturbed, titles, config.seed))
        splits[f"{s}_bio"].append(_biography(profile))
        splits[f"{s}_mcq"].extend(_mcq_rows(rng, profile, facts, titles))
    splits["general_knowledge"], splits["general_knowledge_mcq"] = _general_knowledge(rng)
    return FictitiousAuthors(config=config, authors=authors, splits=splits)

"""SearchQA: answer a question with a search tool over a passage corpus (Search-R1 style).

The agent writes ``<search>query</search>`` and gets the ``top_k`` passages back as
``<information>Doc 1(Title: …) …</information>``, or ``<answer>…</answer>``, scored by exact
match after SQuAD normalisation (lower case, no punctuation or articles). A correct answer
ends the episode with reward 1; a wrong one earns 0 and, as in AgentGym, the agent may try
again (``end_on_wrong_answer=True`` ends the episode instead). Text with neither tag (or an
empty query) raises ``InvalidAction``; the server's in-game answer to it is AgentGym's
(``invalid_action_observation``: ``AGENTGYM_INVALID``).

Retrieval is BM25 (``bm25s``), built once per family and shared read-only by every instance:
``BM25Index.search`` keeps no state between calls, so it is safe from many threads at once.

The package ships a small fictional corpus (298 passages) and 628 questions under
``env_servers/corpora/searchqa`` (see its ``generate.py``). To use a real corpus, pass files
in the format Search-R1 and AgentGym-RL use:

* ``corpus_path``: JSONL (or ``.jsonl.gz``), one passage a line: ``{"id": …, "contents":
  "Title\\ntext"}`` (wiki-18's titles keep their quotes; the first line is the title);
* ``questions_path``: JSONL, one question a line: ``{"question": …, "golden_answers": [...]}``;
  ``data_idx`` is the line number;
* ``index_path`` (optional): a folder where the BM25 index is saved after the first build and
  memory-mapped from then on, checked against the corpus (line count, size, head and tail).

Passage texts are held in memory (about the corpus file's size); building BM25 over
wiki-18's 21M passages takes a long time once, which ``index_path`` keeps to once.
"""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import importlib.resources
import json
import logging
import re
import string
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, ClassVar

import bm25s
import numpy as np

from env_servers.envs.base import EnvFamily, InvalidAction, StepResult, TaskOutOfRange, TextEnv
from trainyard_core.io import atomic_write_text

__all__ = [
    "AGENTGYM_INVALID",
    "DEFAULT_PROMPT",
    "BM25Index",
    "QAItem",
    "SearchQAFamily",
    "SearchQAInstance",
    "exact_match",
    "f1_score",
    "format_passages",
    "load_corpus",
    "load_questions",
    "normalize_answer",
    "parse_action",
]

log = logging.getLogger(__name__)

DEFAULT_PROMPT = (
    "Answer the question below. Reason inside <think> and </think>. When you need facts, "
    "write a query between <search> and </search> and stop there: the results come back "
    "between <information> and </information>. Search as many times as you need. When you "
    "know the answer, write it as a short phrase between <answer> and </answer>, for example "
    "<answer> Paris </answer>.\n\nQuestion: {question}")
INVALID_MESSAGE = (
    "The action is invalid: put a search query between <search> and </search>, or the final "
    "answer between <answer> and </answer>.")
# agentenv-searchqa's observation for a reply with neither tag, verbatim
AGENTGYM_INVALID = (
    "Your previous action is invalid. If you want to search, you should put the query between "
    "<search> and </search>. If you want to give the final answer, you should put the answer "
    "between <answer> and </answer>. Please try again.")
_ACTION = re.compile(r"<(search|answer)>(.*?)</\1>", re.DOTALL)
_ANSWER = re.compile(r"<answer>(.*?)</answer>", re.DOTALL)
_FINGERPRINT = "trainyard_corpus.json"


def _shipped(name: str) -> Path:
    return Path(str(importlib.resources.files("env_servers") / "corpora" / "searchqa" / name))


# -- scoring -------------------------------------------------------------------------------


def normalize_answer(text: str) -> str:
    """SQuAD's normalisation: lower case, drop punctuation and articles, squash spaces."""
    text = "".join(ch for ch in text.lower() if ch not in string.punctuation)
    text = re.sub(r"\b(a|an|the)\b", " ", text)
    return " ".join(text.split())


def exact_match(prediction: str, golden_answers: list[str] | tuple[str, ...]) -> bool:
    norm = normalize_answer(prediction)
    return any(norm == normalize_answer(g) for g in golden_answers)


def f1_score(prediction: str, golden_answers: list[str] | tuple[str, ...]) -> float:
    """Best token-level F1 against any golden answer (reported, not rewarded)."""
    pred = normalize_answer(prediction).split()
    best = 0.0
    for gold in golden_answers:
        ref = normalize_answer(gold).split()
        common = sum((Counter(pred) & Counter(ref)).values())
        if common:
            p, r = common / len(pred), common / len(ref)
            best = max(best, 2 * p * r / (p + r))
    return best


def parse_action(text: str) -> tuple[str, str]:
    """``("search", query)`` or ``("answer", answer)``: the first tag decides, as in AgentGym;
    an answer is the last ``<answer>`` block (Search-R1's rule). ``InvalidAction`` if none."""
    match = _ACTION.search(text)
    if match is None:
        raise InvalidAction(INVALID_MESSAGE)
    kind = match.group(1)
    if kind == "search":
        query = match.group(2).strip()
        if not query:
            raise InvalidAction("The search query is empty. " + INVALID_MESSAGE)
        return kind, query
    return kind, _ANSWER.findall(text)[-1].strip()


# -- data ----------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class QAItem:
    question: str
    golden_answers: tuple[str, ...]


def _jsonl(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    opener: Callable[..., Any] = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise ValueError(f"{path}:{n}: not JSON: {e}") from e
            if not isinstance(row, dict):
                raise ValueError(f"{path}:{n}: expected a JSON object")
            yield n, row


def load_corpus(path: str | Path) -> list[str]:
    """Passage texts (``contents``) in file order."""
    path = Path(path)
    out = []
    for n, row in _jsonl(path):
        contents = row.get("contents")
        if not isinstance(contents, str):
            raise ValueError(f'{path}:{n}: a passage needs a string "contents"')
        out.append(contents)
    if not out:
        raise ValueError(f"{path}: no passages")
    return out


def load_questions(path: str | Path) -> list[QAItem]:
    """Questions in file order; ``golden_answers`` may be one string or a list."""
    path = Path(path)
    out = []
    for n, row in _jsonl(path):
        question, answers = row.get("question"), row.get("golden_answers")
        if isinstance(answers, str):
            answers = [answers]
        if (not isinstance(question, str) or not isinstance(answers, list) or not answers or
                not all(isinstance(a, str) for a in answers)):
            raise ValueError(
                f'{path}:{n}: needs "question" (string) and "golden_answers" (strings)')
        out.append(QAItem(question, tuple(answers)))
    if not out:
        raise ValueError(f"{path}: no questions")
    return out


def format_passages(passages: list[str]) -> str:
    """AgentGym/Search-R1's layout: ``Doc i(Title: first line) rest``, one a line."""
    lines = []
    for i, contents in enumerate(passages, 1):
        title, _, text = contents.partition("\n")
        lines.append(f"Doc {i}(Title: {title}) {text}")
    return "\n".join(lines)


# -- retrieval -----------------------------------------------------------------------------


class BM25Index:
    """BM25 over passage texts. Built once, then read-only: ``search`` reads the index's
    arrays and allocates its own, so concurrent calls need no lock."""

    def __init__(self,
                 passages: list[str],
                 corpus_path: Path | None = None,
                 index_path: str | Path | None = None) -> None:
        self.passages = passages
        fingerprint = _fingerprint(corpus_path, len(passages)) if corpus_path else None
        if index_path is not None and _index_matches(Path(index_path), fingerprint):
            log.debug("searchqa: BM25 index loaded from %s", index_path)
            self._bm25 = bm25s.BM25.load(str(index_path), mmap=True, show_progress=False)
            return
        # bm25s's own bars stay off: a server's log is no place for them; one line instead
        log.info("searchqa: building the BM25 index over %d passages", len(passages))
        tokens = bm25s.tokenize(passages, stopwords="en", show_progress=False)
        self._bm25 = bm25s.BM25(backend="numpy")
        self._bm25.index(tokens, show_progress=False)
        if index_path is not None:
            self._bm25.save(str(index_path), show_progress=False)
            # written last and atomically: a fingerprint means the index beside it is whole
            atomic_write_text(Path(index_path) / _FINGERPRINT, json.dumps(fingerprint))
            log.info("searchqa: BM25 index saved to %s", index_path)

    def __len__(self) -> int:
        return len(self.passages)

    def search(self, query: str, k: int) -> list[tuple[int, float]]:
        """Up to ``k`` (passage index, score) pairs, best first, only passages sharing a term
        with the query; ties go to the earlier passage, so results are deterministic."""
        words = bm25s.tokenize(query, stopwords="en", return_ids=False, show_progress=False)[0]
        ids = self._bm25.get_tokens_ids(words)
        if not ids:
            return []
        scores = np.asarray(self._bm25.get_scores_from_ids(ids))
        n = len(scores)
        k = min(k, n)
        cand = np.argpartition(-scores, k - 1)[:k] if n > k else np.arange(n)
        cand = cand[np.lexsort((cand, -scores[cand]))]
        return [(int(i), float(scores[i])) for i in cand if scores[i] > 0]


def _fingerprint(path: Path, num_docs: int) -> dict[str, Any]:
    """Cheap identity of a corpus file: size, passage count, hashes of its ends."""
    size = path.stat().st_size
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        digest.update(f.read(1 << 20))
        f.seek(max(0, size - (1 << 20)))
        digest.update(f.read(1 << 20))
    return {
        "corpus": str(path.resolve()),
        "size": size,
        "num_docs": num_docs,
        "sha256_ends": digest.hexdigest()
    }


def _index_matches(index_path: Path, fingerprint: dict[str, Any] | None) -> bool:
    marker = index_path / _FINGERPRINT
    if not marker.exists():
        return False
    saved = json.loads(marker.read_text())
    if fingerprint is None or any(
            saved.get(k) != fingerprint[k] for k in ("size", "num_docs", "sha256_ends")):
        log.warning("BM25 index at %s was built from another corpus; rebuilding", index_path)
        return False
    return True


# -- the environment -----------------------------------------------------------------------


class SearchQAInstance(TextEnv):
    """One question at a time; the family's index and questions are shared, never written."""

    def __init__(self, family: SearchQAFamily) -> None:
        self._family = family
        self._item: QAItem | None = None
        self._done = False
        self._searches = 0

    def reset(self, data_idx: int) -> str:
        """Start question ``data_idx``; the answer is the prompt with the question."""
        self._item = self._family.item(data_idx)
        self._done = False
        self._searches = 0
        return self.observation()

    def step(self, action: str) -> StepResult:
        item = self._item
        if item is None:
            raise InvalidAction("no question loaded: reset the instance first")
        if self._done:
            raise InvalidAction("the episode has finished: reset the instance")
        kind, content = parse_action(action)
        if kind == "search":
            self._searches += 1
            hits = self._family.index.search(content, self._family.top_k)
            docs = format_passages([self._family.index.passages[i] for i, _ in hits])
            return StepResult(
                observation=f"<information>{docs or 'No passage matches the query.'}"
                "</information>",
                reward=0.0,
                done=False,
                info={
                    "query": content,
                    "doc_ids": [i for i, _ in hits]
                },
            )
        correct = exact_match(content, item.golden_answers)
        self._done = correct or self._family.end_on_wrong_answer
        return StepResult(
            observation=("Correct: that is the answer."
                         if correct else "Sorry, that answer is incorrect." +
                         ("" if self._done else " Try again.")),
            reward=1.0 if correct else 0.0,
            done=self._done,
            score=1.0 if correct else 0.0,
            info={
                "answer": content,
                "em": correct,
                "f1": f1_score(content, item.golden_answers),
                "searches": self._searches
            },
        )

    def invalid_action_observation(self, action: str, reason: str) -> str:
        """agentenv-searchqa's answer to a reply with neither tag (``AGENTGYM_INVALID``); an
        empty query, which AgentGym would search for, is told so first."""
        match = _ACTION.search(action)
        if match is not None and match.group(1) == "search" and not match.group(2).strip():
            return "Your search query is empty. " + AGENTGYM_INVALID
        return AGENTGYM_INVALID

    def observation(self) -> str:
        """The question prompt (AgentGym's ``/observation``), whatever has happened since."""
        if self._item is None:
            raise InvalidAction("no question loaded: reset the instance first")
        return self._family.prompt_template.format(question=self._item.question.strip())


class SearchQAFamily(EnvFamily):
    """Questions answered by searching a corpus with BM25.

    Options: ``corpus_path`` and ``questions_path`` (JSONL, see the module's docstring; the
    shipped set by default), ``top_k`` passages per search (AgentGym's 3), ``index_path`` to
    save and reuse the BM25 index, ``end_on_wrong_answer``, ``prompt_template`` (with
    ``{question}``). ``num_tasks()`` is the number of questions (628 shipped).
    """

    name: ClassVar[str] = "searchqa"
    blocking: ClassVar[bool] = True

    def __init__(
        self,
        *,
        corpus_path: str | Path | None = None,
        questions_path: str | Path | None = None,
        top_k: int = 3,
        index_path: str | Path | None = None,
        end_on_wrong_answer: bool = False,
        prompt_template: str = DEFAULT_PROMPT,
    ) -> None:
        if top_k < 1:
            raise ValueError("top_k must be >= 1")
        if "{question}" not in prompt_template:
            raise ValueError("prompt_template needs a {question} field")
        corpus = Path(corpus_path) if corpus_path is not None else _shipped("corpus.jsonl")
        questions = (Path(questions_path)
                     if questions_path is not None else _shipped("questions.jsonl"))
        self.top_k = top_k
        self.end_on_wrong_answer = end_on_wrong_answer
        self.prompt_template = prompt_template
        self.questions = load_questions(questions)
        self.index = BM25Index(load_corpus(corpus), corpus, index_path)

    def num_tasks(self) -> int:
        return len(self.questions)

    def item(self, data_idx: int) -> QAItem:
        if not 0 <= data_idx < len(self.questions):
            raise TaskOutOfRange(f"data_idx {data_idx} is outside 0..{len(self.questions) - 1}")
        return self.questions[data_idx]

    def create(self) -> SearchQAInstance:
        return SearchQAInstance(self)

"""SearchQA family: the shipped set is consistent and searchable, episodes score by exact
match, bad input is refused, results are deterministic and thread-safe, and a user's own
corpus, question file and saved index work."""

from __future__ import annotations

import gzip
import importlib.resources
import json
import logging
import re
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from env_servers.envs.base import InvalidAction, TaskOutOfRange
from env_servers.envs.searchqa import (
    BM25Index,
    SearchQAFamily,
    exact_match,
    f1_score,
    load_questions,
    normalize_answer,
    parse_action,
)

SHIPPED = Path(str(importlib.resources.files("env_servers") / "corpora" / "searchqa"))


@pytest.fixture(scope="module")
def fam() -> SearchQAFamily:
    return SearchQAFamily()


@pytest.fixture(scope="module")
def rows() -> list[dict]:
    return [json.loads(line) for line in open(SHIPPED / "questions.jsonl", encoding="utf-8")]


def test_shipped_files_are_what_the_generator_writes(tmp_path: Path) -> None:
    import runpy

    runpy.run_path(str(SHIPPED / "generate.py"), run_name="gen")["generate"](tmp_path)
    for name in ("corpus.jsonl", "questions.jsonl"):
        assert (tmp_path / name).read_bytes() == (SHIPPED / name).read_bytes(), name


def test_the_generator_command_logs_its_summary_and_quiet_drops_it(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import runpy

    main = runpy.run_path(str(SHIPPED / "generate.py"), run_name="gen")["main"]
    assert main([str(tmp_path / "a")]) == 0
    out, err = capsys.readouterr()
    assert out == ""
    assert re.fullmatch(rf"\d+ passages, \d+ questions -> {re.escape(str(tmp_path / 'a'))}\n", err)
    assert main([str(tmp_path / "b"), "--quiet"]) == 0
    assert capsys.readouterr() == ("", "")
    assert (tmp_path / "b" / "corpus.jsonl").read_bytes() == (SHIPPED / "corpus.jsonl").read_bytes()


def test_shipped_answers_are_in_their_passages(fam: SearchQAFamily, rows: list[dict]) -> None:
    assert fam.num_tasks() == len(rows) >= 300 and len(fam.index) >= 250
    for row in rows:
        support = normalize_answer(" ".join(fam.index.passages[int(i)] for i in row["support"]))
        assert any(normalize_answer(a) in support for a in row["golden_answers"]), row


def test_recall_at_k_on_the_shipped_set(fam: SearchQAFamily, rows: list[dict]) -> None:
    """The gold answer is in the top-k passages retrieved with the question as the query."""

    def recall(k: int, hops: int) -> float:
        chosen = [r for r in rows if r["hops"] == hops]
        hits = 0
        for r in chosen:
            found = [fam.index.passages[i] for i, _ in fam.index.search(r["question"], k)]
            text = normalize_answer(" ".join(found))
            hits += any(normalize_answer(a) in text for a in r["golden_answers"])
        return hits / len(chosen)

    assert recall(3, hops=1) >= 0.95
    assert recall(1, hops=1) >= 0.9
    assert recall(3, hops=2) >= 0.6  # the second fact often needs a second search


def test_search_then_answer(fam: SearchQAFamily, rows: list[dict]) -> None:
    env = fam.create()
    row = rows[5]
    prompt = env.reset(5)
    assert prompt.endswith(f"Question: {row['question']}") and env.observation() == prompt
    r = env.step(f"<think>look it up</think>\n<search> {row['question']} </search>")
    assert r.observation.startswith("<information>Doc 1(Title: ")
    assert r.observation.endswith("</information>") and "Doc 3(Title: " in r.observation
    assert (r.reward, r.done) == (0.0, False) and len(r.info["doc_ids"]) == fam.top_k
    wrong = env.step("<answer>Atlantis</answer>")
    assert (wrong.reward, wrong.done, wrong.score) == (0.0, False, 0.0)
    gold = row["golden_answers"][0]
    right = env.step(f"<think>found it</think><answer> The {gold.upper()}. </answer>")
    assert (right.reward, right.done, right.score) == (1.0, True, 1.0)
    assert right.info["em"] and right.info["f1"] == 1.0 and right.info["searches"] == 1
    with pytest.raises(InvalidAction, match="finished"):
        env.step("<answer>again</answer>")
    assert env.observation() == prompt  # AgentGym's /observation: the question prompt


def test_wrong_answer_can_end_the_episode(rows: list[dict]) -> None:
    strict = SearchQAFamily(end_on_wrong_answer=True, top_k=1)
    env = strict.create()
    env.reset(0)
    r = env.step(f"<search>{rows[0]['question']}</search>")
    assert r.observation.count("Doc ") == 1 and not r.done
    r = env.step("<answer>definitely not it</answer>")
    assert (r.reward, r.done) == (0.0, True)


@pytest.mark.parametrize("action", [
    "", "the answer is Paris", "<search>unclosed", "<search> </search>", "<answer>x</search>",
    "<Search>upper case</Search>", "<information>x</information>"
])
def test_malformed_actions_are_refused(fam: SearchQAFamily, action: str) -> None:
    env = fam.create()
    env.reset(0)
    with pytest.raises(InvalidAction):
        env.step(action)
    assert not env.step("<search>island</search>").done  # the episode goes on


def test_invalid_action_observation_is_agentgyms(fam: SearchQAFamily) -> None:
    env = fam.create()
    env.reset(0)
    for action in ("fly away", "Action: search for it", ""):
        if action:
            with pytest.raises(InvalidAction):
                env.step(action)
        assert env.invalid_action_observation(action, "no tag") == (
            "Your previous action is invalid. If you want to search, you should put the query "
            "between <search> and </search>. If you want to give the final answer, you should put "
            "the answer between <answer> and </answer>. Please try again.")
    with pytest.raises(InvalidAction, match="empty"):
        env.step("<search> </search>")
    assert env.invalid_action_observation(
        "<search> </search>",
        "empty").startswith("Your search query is empty. Your previous action is invalid.")
    assert env.step("<answer> nobody </answer>").done is False  # the question is still open


def test_action_parsing_rules() -> None:
    assert parse_action("<answer>a</answer> then <search>q</search>") == ("answer", "a")
    assert parse_action("<search>q</search> <answer>a</answer>") == ("search", "q")
    assert parse_action("<answer>a</answer><answer> b </answer>") == ("answer", "b")
    assert parse_action("<answer></answer>") == ("answer", "")
    assert exact_match("the  Varrow sea!", ["Varrow Sea"]) and not exact_match("Varrow", ["Sea"])
    assert f1_score("Varrow", ["Varrow Sea"]) == pytest.approx(2 / 3)
    assert f1_score("", ["x"]) == 0.0


def test_out_of_range_and_before_reset(fam: SearchQAFamily) -> None:
    env = fam.create()
    with pytest.raises(InvalidAction):
        env.step("<search>x</search>")
    with pytest.raises(InvalidAction):
        env.observation()
    for bad in (-1, fam.num_tasks()):
        with pytest.raises(TaskOutOfRange):
            env.reset(bad)


def test_deterministic_across_instances_and_families(fam: SearchQAFamily, rows: list[dict]) -> None:
    actions = [f"<search>{rows[i]['question']}</search>" for i in range(0, 600, 37)]
    actions += ["<search>river mountain town founded</search>", "<search>zzzz qqqq</search>"]

    def run(env_fam: SearchQAFamily) -> list[str]:
        env = env_fam.create()
        env.reset(7)
        return [env.step(a).observation for a in actions]

    first = run(fam)
    assert run(fam) == first and run(SearchQAFamily()) == first
    assert first[-1] == "<information>No passage matches the query.</information>"


def test_concurrent_searches_match_sequential(fam: SearchQAFamily, rows: list[dict]) -> None:
    queries = [r["question"] for r in rows[:200]]
    expected = [fam.index.search(q, 5) for q in queries]
    with ThreadPoolExecutor(8) as pool:
        for _ in range(3):
            assert list(pool.map(lambda q: fam.index.search(q, 5), queries)) == expected


def _write_custom(tmp: Path, gz: bool = False) -> tuple[Path, Path]:
    passages = [
        {
            "id": "a",
            "contents": '"Zorblat"\nZorblat is a moon of Quenn, discovered in 2091.'
        },
        {
            "id": "b",
            "contents": "Quenn\nQuenn is a gas giant with nine rings."
        },
        {
            "id": "c",
            "contents": "Ferrowax\nFerrowax is an alloy that melts at 412 degrees."
        },
    ]
    text = "".join(json.dumps(p) + "\n" for p in passages)
    corpus = tmp / ("corpus.jsonl.gz" if gz else "corpus.jsonl")
    if gz:
        with gzip.open(corpus, "wt", encoding="utf-8") as f:
            f.write(text)
    else:
        corpus.write_text(text)
    questions = tmp / "questions.jsonl"
    questions.write_text(
        json.dumps({
            "question": "When was Zorblat discovered?",
            "golden_answers": ["2091"]
        }) + "\n\n" + json.dumps({
            "question": "At what temperature does Ferrowax melt?",
            "golden_answers": "412 degrees"
        }) + "\n")
    return corpus, questions


@pytest.mark.parametrize("gz", [False, True])
def test_custom_corpus_and_questions(tmp_path: Path, gz: bool) -> None:
    corpus, questions = _write_custom(tmp_path, gz)
    custom = SearchQAFamily(corpus_path=corpus, questions_path=questions, top_k=2)
    assert custom.num_tasks() == 2 and len(custom.index) == 3
    env = custom.create()
    assert env.reset(1).endswith("Question: At what temperature does Ferrowax melt?")
    r = env.step("<search>Ferrowax melt</search>")
    assert r.observation.startswith("<information>Doc 1(Title: Ferrowax) Ferrowax is an alloy")
    assert "Doc 2" not in r.observation  # only passages sharing a term are returned
    assert env.step("<answer>412 degrees</answer>").reward == 1.0
    env.reset(0)
    r = env.step("<search>Zorblat discovered</search>")
    assert r.observation.startswith('<information>Doc 1(Title: "Zorblat") Zorblat is a moon')
    with pytest.raises(TaskOutOfRange):
        env.reset(2)


def test_saved_index_is_reused_and_checked(tmp_path: Path,
                                           caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="env_servers.envs.searchqa")
    corpus, questions = _write_custom(tmp_path)
    index_dir = tmp_path / "index"
    built = SearchQAFamily(corpus_path=corpus, questions_path=questions, index_path=index_dir)
    assert (index_dir / "trainyard_corpus.json").exists()
    assert [r.getMessage() for r in caplog.records] == [
        f"searchqa: building the BM25 index over {len(built.index)} passages",
        f"searchqa: BM25 index saved to {index_dir}"
    ]
    caplog.clear()
    marker = (index_dir / "params.index.json").stat().st_mtime_ns
    loaded = SearchQAFamily(corpus_path=corpus, questions_path=questions, index_path=index_dir)
    assert not [r for r in caplog.records if r.levelno >= logging.INFO]  # loaded, not built
    assert (index_dir / "params.index.json").stat().st_mtime_ns == marker  # not rebuilt
    for q in ("Zorblat moon", "alloy melts", "rings giant"):
        assert loaded.index.search(q, 3) == built.index.search(q, 3) != []
    # another corpus in the same file: the stale index is rebuilt, not trusted
    corpus.write_text(
        json.dumps({
            "id": "y",
            "contents": "Quenn\nQuenn has rings."
        }) + "\n" + json.dumps({
            "id": "z",
            "contents": "Solo\nA note on Zorblat."
        }) + "\n")
    rebuilt = SearchQAFamily(corpus_path=corpus, questions_path=questions, index_path=index_dir)
    assert len(rebuilt.index) == 2
    assert [i for i, _ in rebuilt.index.search("Zorblat", 3)] == [1]  # the old index says 0


def test_bad_files_say_where(tmp_path: Path) -> None:
    bad = tmp_path / "q.jsonl"
    bad.write_text('{"question": "q", "golden_answers": ["a"]}\n{"question": "no answers"}\n')
    with pytest.raises(ValueError, match=r"q.jsonl:2"):
        load_questions(bad)
    bad.write_text('{"question": "q", "golden_answers": ["a"]}\nnot json\n')
    with pytest.raises(ValueError, match=r"q.jsonl:2: not JSON"):
        load_questions(bad)
    corpus = tmp_path / "c.jsonl"
    corpus.write_text('{"id": "1", "text": "no contents field"}\n')
    with pytest.raises(ValueError, match="contents"):
        SearchQAFamily(corpus_path=corpus)
    with pytest.raises(ValueError, match="top_k"):
        SearchQAFamily(top_k=0)


def test_index_handles_unknown_words_and_small_corpora() -> None:
    index = BM25Index(["A\nalpha beta", "B\nbeta gamma", "C\ngamma delta"])
    assert index.search("the of and", 3) == []  # stopwords only
    assert index.search("omega", 3) == []
    hits = index.search("beta gamma", 10)  # k above the corpus size
    assert [i for i, _ in hits] == [1, 0, 2] and hits[0][1] > hits[1][1]

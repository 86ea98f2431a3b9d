"""AgentGym's HTTP API, one wire format per family, over the shared ``InstanceManager``.

Routes, request fields and response fields are those of AgentGym's servers
(WooooDyy/AgentGym ``agentenv-{babyai,textcraft,sciworld}``; SearchQA from
SixPlusSeven67/AgentGym ``agentenv-searchqa``), so an AgentGym client works unchanged. Unknown
request fields are ignored, as there (AgentGym's TextCraft client sends ``minecraft_dir``).
What differs is failure: a 4xx status with ``{"detail": "<message>"}`` instead of HTTP 200
with ``{"error": ...}``. Three answers follow AgentGym's on purpose, because its clients
assert status 200 on every call and a rollout would die on anything else: an unparseable
action is a step whose observation is the family's in-game message (``INVALID_ACTION``; the
step's ``info`` says ``invalid_action``; ``strict_actions`` keeps a 422), ``/close`` of an id
that is already gone answers ``false``, and ``/reset`` recreates a reaped id.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

from fastapi import Body, FastAPI, Query
from pydantic import BaseModel, Field

from env_servers.envs.base import StepResult
from env_servers.errors import ApiError
from env_servers.instances import Instance, InstanceManager, InvalidObservation

__all__ = ["INVALID_ACTION", "ROUTES", "add_family_routes"]

_ID = Field(ge=0, description="instance id from /create")
_ID_QUERY = Query(ge=0, description="instance id from /create")


class IdBody(BaseModel):
    id: int = _ID


class StepBody(IdBody):
    action: str = Field(description="the agent's action, as text")


class ResetBody(IdBody):
    data_idx: int = Field(description="task id, 0 .. num_tasks - 1 (see /health)")


class Created(BaseModel):
    id: int


class BabyAIReset(BaseModel):
    observation: str
    reward: float
    score: float
    deleted: bool
    done: bool


_INFO = Field(default=None,
              description='only on an action the game did not understand: {"invalid_action": '
              'true, "reason": ...} (AgentGym\'s clients ignore it)')


class BabyAIStep(BaseModel):
    observation: str
    reward: float
    score: float
    done: bool
    info: dict[str, Any] | None = _INFO


class BabyAIObservation(BaseModel):
    observation: str
    reward: float
    score: float
    done: bool
    deleted: bool


class TextCraftCreateBody(BaseModel):
    commands: str | None = Field(default=None, description="custom recipe list (with goal)")
    goal: str | None = Field(default=None,
                             description="custom goal item, e.g. minecraft:oak_planks")


class TextCraftResetBody(IdBody):
    data_idx: int = Field(default=0, description="task id, 0 .. num_tasks - 1 (see /health)")


class TextCraftState(BaseModel):
    id: int
    observation: str
    done: bool
    reward: float


class TextCraftStep(BaseModel):
    observation: str
    reward: float
    done: bool
    info: dict[str, Any] | None = _INFO


class TextCraftDetail(BaseModel):
    observation: str
    done: bool
    reward: float
    deleted: bool


class SciWorldReset(BaseModel):
    task_name: str
    var_num: int
    task_description: str
    observation: str
    reward: float
    score: float
    deleted: bool
    done: bool


class SciWorldStep(BabyAIStep):
    pass


class SearchQACreateBody(BaseModel):
    id: int = Field(default=0, description="question (data_idx) the new instance starts on")


class SearchQAResetBody(BaseModel):
    env_idx: int = Field(ge=0, description="instance id from /create")
    id: int | None = Field(default=None, description="question (data_idx); none: the current one")


class SearchQAStepBody(BaseModel):
    env_idx: int = Field(ge=0, description="instance id from /create")
    action: str = Field(description="the model's reply: <search>...</search> or "
                        "<answer>...</answer>")


class SearchQAStep(BaseModel):
    observation: str
    reward: float
    done: bool
    info: dict[str, Any] | None = _INFO  # AgentGym's is always null


class SearchQACloseBody(BaseModel):
    id: int | None = Field(default=None, ge=0, description="instance id (AgentGym's server field)")
    env_idx: int | None = Field(default=None,
                                ge=0,
                                description="instance id (AgentGym's client field)")


class MissingField(ApiError):
    status = 422


# -- the in-game answer to an action the game does not understand (AgentGym's wording) -----

_BABYAI_ACTIONS = "\nAvailable actions: ["


def _babyai_invalid(instance: Instance, action: str, reason: str) -> str:
    # agentenv-babyai: "" -> "No change in state.", else "not recognized"; then the action list
    # of the last observation, which the action did not change.
    message = ("No change in state." if not action.strip() else
               "The action is not recognized. Please check valid actions.")
    last = instance.observation
    at = last.rfind(_BABYAI_ACTIONS)
    return message + (last[at:] if at >= 0 else "")


def _textcraft_invalid(instance: Instance, action: str, reason: str) -> str:
    return f"Could not execute {action}"  # agentenv-textcraft's ActionFailed, verbatim


_SEARCHQA_INVALID = (
    "Your previous action is invalid. If you want to search, you should put the query between "
    "<search> and </search>. If you want to give the final answer, you should put the answer "
    "between <answer> and </answer>. Please try again.")


def _searchqa_invalid(instance: Instance, action: str, reason: str) -> str:
    return _SEARCHQA_INVALID


def _sciworld_invalid(instance: Instance, action: str, reason: str) -> str:
    return reason  # ScienceWorld's own parser message (its Java exception, named)


INVALID_ACTION: dict[str, InvalidObservation] = {
    "babyai": _babyai_invalid,
    "textcraft": _textcraft_invalid,
    "searchqa": _searchqa_invalid,
    "sciworld": _sciworld_invalid,
}


def _common(app: FastAPI, m: InstanceManager, greeting: str) -> None:

    @app.get("/", summary="What this server is (AgentGym's greeting)")
    async def hello() -> str:
        return greeting


def _close_route(app: FastAPI, m: InstanceManager) -> None:

    @app.post("/close",
              summary="Close an instance: true; false (AgentGym's answer) when the id is "
              "already closed, reaped or unknown")
    async def close(body: IdBody) -> bool:
        return await m.close_if_open(body.id)

    _render_route(app, m)


def _render_route(app: FastAPI, m: InstanceManager) -> None:

    @app.post("/render",
              summary="The instance's picture, a data:image/png;base64 URL (AgentGym's BabyAI "
              "/render); 404 naming the family where it draws none")
    async def render(body: SearchQACloseBody) -> Any:
        return await m.render(_target(body))


def _target(body: SearchQACloseBody) -> int:
    """The instance a body names: SearchQA's ``env_idx`` when given, else ``id``."""
    target = body.env_idx if body.env_idx is not None else body.id
    if target is None:
        raise MissingField("body needs id (SearchQA: env_idx): the instance")
    return target


def _extra_routes(app: FastAPI, m: InstanceManager, names: tuple[str, ...]) -> None:
    for name in names:

        def make(view: str) -> Callable[..., Any]:

            async def extra(id: int = _ID_QUERY) -> Any:
                return await m.extra(id, view)

            extra.__name__ = f"get_{view}"
            return extra

        app.get(f"/{name}", summary=f"The instance's {name} (AgentGym's /{name})")(make(name))


def _babyai(app: FastAPI, m: InstanceManager) -> None:
    _common(app, m, "This is environment BabyAI.")

    @app.post("/create", summary="New instance (not reset yet)")
    async def create() -> Created:
        return Created(id=(await m.create()).id)

    @app.post("/reset", summary="Start task data_idx (level data_idx % 40, seed data_idx // 40)")
    async def reset(body: ResetBody) -> BabyAIReset:
        i = await m.reset(body.id, body.data_idx)
        return BabyAIReset(observation=i.observation,
                           reward=i.reward,
                           score=i.score,
                           deleted=False,
                           done=i.done)

    @app.post("/step",
              summary="Take an action; reward is this step's, score the episode's",
              response_model_exclude_none=True)
    async def step(body: StepBody) -> BabyAIStep:
        i, result = await m.step(body.id, body.action)
        return BabyAIStep(observation=i.observation,
                          reward=i.reward,
                          score=i.score,
                          done=i.done,
                          info=_invalid_info(result))

    @app.get("/observation", summary="Goal, current view and available actions")
    async def observation(id: int = _ID_QUERY) -> BabyAIObservation:
        i = await m.observe(id)
        return BabyAIObservation(observation=i.observation,
                                 reward=i.reward,
                                 score=i.score,
                                 done=i.done,
                                 deleted=False)

    _close_route(app, m)


def _textcraft_state(i: Instance) -> TextCraftState:
    return TextCraftState(id=i.id, observation=i.observation, done=i.done, reward=i.reward)


def _textcraft(app: FastAPI, m: InstanceManager) -> None:
    _common(app, m, "This is environment TextCraft.")

    @app.post("/create",
              summary="New instance, started on task id % num_tasks, or on a "
              "custom recipe list and goal")
    async def create(body: Annotated[TextCraftCreateBody | None, Body()] = None) -> TextCraftState:
        body = body or TextCraftCreateBody()
        custom = (body.commands, body.goal)
        if (custom[0] is None) != (custom[1] is None):
            raise MissingField("give both commands and goal for a custom task, or neither "
                               f"(got only {'commands' if custom[0] is not None else 'goal'})")
        goal = ""
        if body.goal is not None:
            goal = body.goal if body.goal.startswith("minecraft:") else \
                "minecraft:" + body.goal.strip().replace(" ", "_")
            if not m.family.is_item(goal):  # type: ignore[attr-defined]
                raise MissingField(f"goal {body.goal!r} is not a TextCraft item")
        created = await m.create()
        try:
            async with m.use(created.id) as i:
                if body.commands is not None:
                    await m.begin(i, None, i.env.start, body.commands, goal)  # type: ignore
                else:
                    data_idx = created.id % m.num_tasks()  # AgentGym starts task == id
                    await m.begin(i, data_idx, i.env.reset, data_idx)
                return _textcraft_state(i)
        except BaseException:
            await m.close(created.id, "failed to start")
            raise

    @app.post("/reset", summary="Start task data_idx (default 0)")
    async def reset(body: TextCraftResetBody) -> TextCraftState:
        return _textcraft_state(await m.reset(body.id, body.data_idx))

    @app.post("/step", summary="get / craft / inventory", response_model_exclude_none=True)
    async def step(body: StepBody) -> TextCraftStep:
        i, result = await m.step(body.id, body.action)
        return TextCraftStep(observation=i.observation,
                             reward=i.reward,
                             done=i.done,
                             info=_invalid_info(result))

    @app.get("/observation", summary="The last observation")
    async def observation(id: int = _ID_QUERY) -> str:
        return (await m.observe(id)).observation

    @app.get("/detail", summary="observation, done, reward, deleted")
    async def detail(id: int = _ID_QUERY) -> TextCraftDetail:
        i = await m.observe(id)
        return TextCraftDetail(observation=i.observation,
                               done=i.done,
                               reward=i.reward,
                               deleted=False)

    _extra_routes(app, m, ("commands", "goal"))
    _close_route(app, m)


def _sciworld(app: FastAPI, m: InstanceManager) -> None:
    _common(app, m, "This is environment ScienceWorld.")

    @app.post("/create", summary="New instance (a JVM from the pool; not reset yet)")
    async def create() -> Created:
        return Created(id=(await m.create()).id)

    @app.post("/reset", summary="Load task data_idx (task x variation) and look around")
    async def reset(body: ResetBody) -> SciWorldReset:
        async with m.use(body.id, revive=True) as i:
            m.check_data_idx(body.data_idx)
            await m.begin(i, body.data_idx, i.env.reset, body.data_idx)
            info = dict(i.reset_info)
            view = i.env.extras().get("detail")
            if view is not None:  # the family's record of AgentGym's reset fields
                info = {**(await m.call(view)), **info}
        return SciWorldReset(task_name=str(info.get("task_name", "")),
                             var_num=int(info.get("var_num", 0)),
                             task_description=str(info.get("task_description", "")),
                             observation=str(info.get("observation", i.observation)),
                             reward=float(info.get("reward", 0.0)),
                             score=float(info.get("score", 0.0)),
                             deleted=False,
                             done=bool(info.get("done", i.done)))

    @app.post("/step",
              summary="Any text; ScienceWorld answers what it cannot parse",
              response_model_exclude_none=True)
    async def step(body: StepBody) -> SciWorldStep:
        i, result = await m.step(body.id, body.action)
        return SciWorldStep(observation=i.observation,
                            reward=i.reward,
                            score=i.score,
                            done=i.done,
                            info=_invalid_info(result))

    @app.get("/observation", summary="The last observation")
    async def observation(id: int = _ID_QUERY) -> str:
        return (await m.observe(id)).observation

    _extra_routes(app, m,
                  ("action_hint", "goals", "detail", "task_description", "object_tree", "state"))
    _close_route(app, m)


def _searchqa(app: FastAPI, m: InstanceManager) -> None:
    _common(app, m, "ok")

    @app.post("/create", summary="New instance on question id; answers the bare env_idx")
    async def create(body: Annotated[SearchQACreateBody | None, Body()] = None) -> int:
        data_idx = (body or SearchQACreateBody()).id
        m.check_data_idx(data_idx)
        created = await m.create()
        try:
            async with m.use(created.id) as i:
                await m.begin(i, data_idx, i.env.reset, data_idx)
        except BaseException:
            await m.close(created.id, "failed to start")
            raise
        return created.id

    @app.post("/reset",
              summary="Start question id (or restart the current one); answers "
              "the bare prompt")
    async def reset(body: SearchQAResetBody) -> str:
        async with m.use(body.env_idx, revive=True) as i:
            data_idx = i.data_idx if body.id is None else body.id
            if data_idx is None:
                raise MissingField("id is required: this instance has no question yet")
            m.check_data_idx(data_idx)
            await m.begin(i, data_idx, i.env.reset, data_idx)
            return i.observation

    @app.post("/step", summary="<search>query</search> or <answer>answer</answer>")
    async def step(body: SearchQAStepBody) -> SearchQAStep:
        i, result = await m.step(body.env_idx, body.action)
        return SearchQAStep(observation=i.observation,
                            reward=i.reward,
                            done=i.done,
                            info=_invalid_info(result))

    @app.get("/observation", summary="The question prompt (bare string)")
    async def observation(env_idx: int = Query(ge=0, description="instance id")) -> str:
        return (await m.observe(env_idx)).observation

    @app.post("/close",
              summary="Close an instance; AgentGym's client sends env_idx, its "
              "server reads id: both work")
    async def close(body: SearchQACloseBody) -> bool:
        return await m.close_if_open(_target(body))

    _render_route(app, m)


ROUTES: dict[str, Callable[[FastAPI, InstanceManager], None]] = {
    "babyai": _babyai,
    "textcraft": _textcraft,
    "sciworld": _sciworld,
    "searchqa": _searchqa,
}


def _invalid_info(result: StepResult) -> dict[str, Any] | None:
    return result.info if result.info.get("invalid_action") else None


def add_family_routes(app: FastAPI, manager: InstanceManager) -> None:
    """Register the wire format of ``manager.family`` on ``app`` (and its in-game answer to an
    unparseable action, unless the manager was given one)."""
    name = manager.family.name
    if name not in ROUTES:
        raise ValueError(f"no wire format for family {name!r}; known: {', '.join(ROUTES)}")
    if manager.invalid_observation is None:
        manager.invalid_observation = INVALID_ACTION.get(name)
    ROUTES[name](app, manager)

"""AgentGym's HTTP API, one wire format per family, over the shared ``InstanceManager``.

Routes, request fields and response fields are those of AgentGym's servers
(WooooDyy/AgentGym ``agentenv-{babyai,textcraft,sciworld}``; SearchQA from
SixPlusSeven67/AgentGym ``agentenv-searchqa``), so an AgentGym client works unchanged. Unknown
request fields are ignored, as there (AgentGym's TextCraft client sends ``minecraft_dir``).
What differs is failure: a 4xx status with ``{"detail": "<message>"}`` instead of HTTP 200
with ``{"error": ...}``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

from fastapi import Body, FastAPI, Query
from pydantic import BaseModel, Field

from env_servers.errors import ApiError
from env_servers.instances import Instance, InstanceManager

__all__ = ["ROUTES", "add_family_routes"]

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


class BabyAIStep(BaseModel):
    observation: str
    reward: float
    score: float
    done: bool


class BabyAIObservation(BabyAIStep):
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
    info: None = None


class SearchQACloseBody(BaseModel):
    id: int | None = Field(default=None, ge=0, description="instance id (AgentGym's server field)")
    env_idx: int | None = Field(default=None,
                                ge=0,
                                description="instance id (AgentGym's client field)")


class MissingField(ApiError):
    status = 422


def _common(app: FastAPI, m: InstanceManager, greeting: str) -> None:

    @app.get("/", summary="What this server is (AgentGym's greeting)")
    async def hello() -> str:
        return greeting


def _close_route(app: FastAPI, m: InstanceManager) -> None:

    @app.post("/close", summary="Close an instance; its id then answers 404")
    async def close(body: IdBody) -> bool:
        await m.close(body.id)
        return True


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

    @app.post("/step", summary="Take an action; reward is this step's, score the episode's")
    async def step(body: StepBody) -> BabyAIStep:
        i, _ = await m.step(body.id, body.action)
        return BabyAIStep(observation=i.observation, reward=i.reward, score=i.score, done=i.done)

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

    @app.post("/step", summary="get / craft / inventory")
    async def step(body: StepBody) -> TextCraftStep:
        i, _ = await m.step(body.id, body.action)
        return TextCraftStep(observation=i.observation, reward=i.reward, done=i.done)

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
        async with m.use(body.id) as i:
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

    @app.post("/step", summary="Any text; ScienceWorld answers what it cannot parse")
    async def step(body: StepBody) -> SciWorldStep:
        i, _ = await m.step(body.id, body.action)
        return SciWorldStep(observation=i.observation, reward=i.reward, score=i.score, done=i.done)

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
        async with m.use(body.env_idx) as i:
            data_idx = i.data_idx if body.id is None else body.id
            if data_idx is None:
                raise MissingField("id is required: this instance has no question yet")
            m.check_data_idx(data_idx)
            await m.begin(i, data_idx, i.env.reset, data_idx)
            return i.observation

    @app.post("/step", summary="<search>query</search> or <answer>answer</answer>")
    async def step(body: SearchQAStepBody) -> SearchQAStep:
        i, _ = await m.step(body.env_idx, body.action)
        return SearchQAStep(observation=i.observation, reward=i.reward, done=i.done)

    @app.get("/observation", summary="The question prompt (bare string)")
    async def observation(env_idx: int = Query(ge=0, description="instance id")) -> str:
        return (await m.observe(env_idx)).observation

    @app.post("/close",
              summary="Close an instance; AgentGym's client sends env_idx, its "
              "server reads id: both work")
    async def close(body: SearchQACloseBody) -> bool:
        target = body.env_idx if body.env_idx is not None else body.id
        if target is None:
            raise MissingField("body needs env_idx (or id): the instance to close")
        await m.close(target)
        return True


ROUTES: dict[str, Callable[[FastAPI, InstanceManager], None]] = {
    "babyai": _babyai,
    "textcraft": _textcraft,
    "sciworld": _sciworld,
    "searchqa": _searchqa,
}


def add_family_routes(app: FastAPI, manager: InstanceManager) -> None:
    """Register the wire format of ``manager.family`` on ``app``."""
    try:
        ROUTES[manager.family.name](app, manager)
    except KeyError:
        raise ValueError(f"no wire format for family {manager.family.name!r}; "
                         f"known: {', '.join(ROUTES)}") from None

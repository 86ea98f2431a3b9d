"""BabyAI in text: AgentGym's task ids, view sentences, action names, and a planner whose
macro actions really reach, pick up and open what they name in minigrid."""

from __future__ import annotations

import base64
import re
import struct
import zlib

import gymnasium as gym
import numpy as np
import pytest
from minigrid.core.constants import COLOR_TO_IDX, OBJECT_TO_IDX, STATE_TO_IDX

from env_servers.envs.babyai import (
    DROP,
    FORWARD,
    LEFT,
    LEVELS,
    NO_CHANGE,
    NOT_RECOGNIZED,
    PICKUP,
    RIGHT,
    TOGGLE,
    BabyAIEnv,
    BabyAIFamily,
    BabyAITask,
    action_menu,
    describe,
    parse_action,
    read_view,
)
from env_servers.envs.base import InvalidAction, TaskOutOfRange


@pytest.fixture(scope="module")
def family() -> BabyAIFamily:
    return BabyAIFamily()


def _actions(observation: str) -> list[str]:
    return re.findall(r'"([^"]+)"', observation.rsplit("Available actions: ", 1)[1])


def test_task_ids_are_agentgyms(family: BabyAIFamily) -> None:
    assert len(LEVELS) == len(set(LEVELS)) == 40
    assert all(level in gym.envs.registry for level in LEVELS)
    assert family.num_tasks() == 40_000
    assert family.task(0) == BabyAITask("BabyAI-GoToRedBallGrey-v0", 0)
    assert family.task(41) == BabyAITask("BabyAI-GoToRedBall-v0", 1)
    assert family.task(39_999) == BabyAITask("BabyAI-BossLevelNoUnlock-v0", 999)
    with pytest.raises(TaskOutOfRange, match=r"data_idx -1 is out of range: babyai takes any "):
        family.check_data_idx(-1)
    with pytest.raises(TaskOutOfRange, match="data_idx -41 is out of range"):
        family.task(-41)
    assert BabyAIFamily(seeds_per_level=3).num_tasks() == 120


def test_task_ids_past_the_listed_ones_name_agentgyms_worlds(family: BabyAIFamily) -> None:
    # agentenv-babyai: level all_levels[data_idx % 40 + 1], seed data_idx // 40, no upper bound
    for data_idx in (40_000, 40_041, 123_456_789):
        family.check_data_idx(data_idx)
    assert family.task(40_000) == BabyAITask("BabyAI-GoToRedBallGrey-v0", 1000)
    assert family.task(40_041) == BabyAITask("BabyAI-GoToRedBall-v0", 1001)
    assert BabyAIFamily(seeds_per_level=3).task(120) == BabyAITask("BabyAI-GoToRedBallGrey-v0", 3)
    env = family.create()
    first = env.reset(40_041)
    world = gym.make("BabyAI-GoToRedBall-v0", disable_env_checker=True).unwrapped
    world.reset(seed=1001)
    assert first.startswith(f"Your goal: {world.mission}\n")
    assert (tuple(_world(env).agent_pos), _world(env).agent_dir) == (tuple(world.agent_pos),
                                                                     world.agent_dir)


def test_every_level_resets_to_goal_view_and_actions(family: BabyAIFamily) -> None:
    env = family.create()
    for data_idx in range(40):
        first = env.reset(data_idx)
        goal, view = first.split("\n")[:2]
        assert goal == f"Your goal: {env.goal}" and env.goal
        assert view.endswith(("You are not carrying anything.", "."))
        actions = _actions(first)
        assert actions[:2] == ["turn left", "turn right"]
        assert actions[-1] == "check available actions"
    env.close()


def test_a_task_id_is_one_world_and_instances_are_independent(family: BabyAIFamily) -> None:
    a, b = family.create(), family.create()
    first = a.reset(5)
    assert b.reset(5) == first  # same task id, same world
    assert a.reset(45) != first  # same level, next seed
    a.reset(5)
    moved = a.step("turn left").observation
    assert b.observation() == first  # b did not move
    assert b.step("turn left").observation == moved


def _image(objects: dict[tuple[int, int], tuple[str, str, str]]) -> np.ndarray:
    """A 7x7 encoded view, empty floor, with objects at (forward, right) in the agent's frame."""
    image = np.zeros((7, 7, 3), dtype=np.uint8)
    image[:, :, 0] = OBJECT_TO_IDX["empty"]
    for (forward, right), (kind, color, state) in objects.items():
        col, row = right + 3, 6 - forward
        image[col,
              row] = (OBJECT_TO_IDX[kind], COLOR_TO_IDX[color], STATE_TO_IDX[state] if state else 0)
    return image


def test_view_sentences_order_and_numbers() -> None:
    walls = {(6, r): ("wall", "grey", "") for r in range(-3, 4)}
    view = read_view(
        _image({
            **walls, (2, 1): ("ball", "red", ""),
            (4, 0): ("ball", "red", ""),
            (3, -3): ("door", "green", "closed")
        }), None)
    assert [s.label for s in view.objects] == ["red ball 1", "red ball 2", "green closed door 1"]
    assert describe(view) == (
        "In front of you in this room, you can see several objects: "
        "There is a red ball 1 2 steps in front of you and 1 steps to your right.  "
        "There is a red ball 2 right in front of you 4 steps away.  "
        "There is a green closed door 1 3 steps in front of you and 3 steps to your left.  "
        "The room has walls around you. You are facing a wall 6 steps away. "
        "You are not carrying anything.")
    empty = read_view(_image({}), ("blue", "key"))
    assert describe(empty) == ("You cannot see any objects within sight. The room has walls "
                               "around you. You are carrying a blue key.")
    walls_only = read_view(_image({(2, 0): ("wall", "grey", "")}), None)
    assert describe(walls_only) == (  # AgentGym's wording when only walls are in sight
        "In front of you in this room, you can see several objects: The room has walls around "
        "you. You are facing a wall 2 steps away. You are not carrying anything.")


def test_menu_plans_shortest_routes_and_explains_the_rest() -> None:
    view = read_view(
        _image({
            (2, 1): ("ball", "red", ""),
            (3, -3): ("door", "green", "closed"),
            (5, 2): ("key", "blue", ""),  # walled in: no route
            (4, 2): ("wall", "grey", ""),
            (5, 1): ("wall", "grey", ""),
            (5, 3): ("wall", "grey", ""),
            (6, 2): ("wall", "grey", ""),
        }),
        None)
    menu, why = action_menu(view)
    assert menu["pickup red ball 1"] == [FORWARD, FORWARD, RIGHT, PICKUP]
    assert menu["go to red ball 1"] == [FORWARD, FORWARD, RIGHT]
    assert menu["toggle and go through green closed door 1"] == [
        FORWARD, FORWARD, FORWARD, LEFT, FORWARD, FORWARD, TOGGLE, FORWARD
    ]
    assert "pickup blue key 1" not in menu and "go to blue key 1" not in menu
    assert why["pickup blue key 1"] == "You cannot pickup blue key 1, as there is no path " \
        "leading to it."
    assert "drop" not in menu and "not carrying anything" in why["drop"]
    assert "go through green closed door 1" in why
    assert list(menu)[:3] == ["turn left", "turn right", "move forward"]

    held, _ = action_menu(read_view(_image({(1, 0): ("wall", "grey", "")}), ("red", "ball")))
    assert "move forward" not in held and "drop" not in held  # a wall in front
    held, _ = action_menu(read_view(_image({}), ("red", "ball")))
    assert held["drop"] == [DROP]
    locked = {(1, 0): ("door", "yellow", "locked")}
    assert "toggle" not in action_menu(read_view(_image(locked), ("red", "key")))[0]
    assert action_menu(read_view(_image(locked), ("yellow", "key")))[0]["toggle"] == [TOGGLE]


@pytest.mark.parametrize(("text", "label"), [
    ("turn left", "turn left"),
    ("  Turn   LEFT. ", "turn left"),
    ("go forward", "move forward"),
    ("pick up red ball", "pickup red ball 1"),
    ("pickup grey key 2", "pickup grey key 2"),
    ("toggle and go through yellow locked door 1", "toggle and go through yellow locked door 1"),
    ("go to the goal", "go to goal"),
    ("go to purple box 3", "go to purple box 3"),
    ("check available actions", "check available actions"),
    ("please check what I can do", "check available actions"),
])
def test_parse_action_accepts_agentgym_names(text: str, label: str) -> None:
    assert parse_action(text) == label


@pytest.mark.parametrize("text", ["", "   ", "fly", "pickup", "go to the moon", "turn around"])
def test_parse_action_rejects_what_is_not_an_action(text: str) -> None:
    with pytest.raises(InvalidAction):
        parse_action(text)


def _world(env: BabyAIEnv) -> object:
    return env._env  # the minigrid env behind the text


def test_unavailable_action_explains_and_changes_nothing(family: BabyAIFamily) -> None:
    env = family.create()
    env.reset(1)
    world = _world(env)
    before = (tuple(world.agent_pos), world.agent_dir, world.step_count)
    result = env.step("pickup purple box 3")  # well formed, but no such box: AgentGym's words
    assert result.observation.startswith(NOT_RECOGNIZED + "\nAvailable actions: [")
    assert (result.reward, result.done) == (0.0, False)
    assert (tuple(world.agent_pos), world.agent_dir, world.step_count) == before


def test_go_to_and_pickup_act_in_minigrid(family: BabyAIFamily) -> None:
    env = family.create()
    data_idx = LEVELS.index("BabyAI-PickupLoc-v0")  # seed 0: a grey key among others
    first = env.reset(data_idx)
    assert "pickup grey key 1" in _actions(first)
    world = _world(env)
    env.step("go to grey key 1")
    ahead = world.grid.get(*world.front_pos)
    assert (ahead.type, ahead.color) == ("key", "grey")
    assert "There is a grey key 1 right in front of you 1 steps away.  " in env.observation()
    result = env.step("pickup grey key 1")
    assert world.carrying is not None and (world.carrying.type, world.carrying.color) == ("key",
                                                                                          "grey")
    assert "You are carrying a grey key." in result.observation
    assert result.done and result.reward > 0  # the mission was to pick up the grey key


def test_toggle_and_go_through_opens_the_door(family: BabyAIFamily) -> None:
    env = family.create()
    first = env.reset(LEVELS.index("BabyAI-OpenRedDoor-v0"))
    assert "toggle and go through red closed door 1" in _actions(first)
    result = env.step("toggle and go through red closed door 1")
    assert result.done and 0 < result.reward <= 1 and result.score == result.reward
    assert "The task is completed." in result.observation


def test_check_lists_actions_without_acting(family: BabyAIFamily) -> None:
    env = family.create()
    first = env.reset(3)
    result = env.step("check available actions")
    assert result.observation.startswith("You can take the following actions: " +
                                         ", ".join(_actions(first)))
    assert env.observation().startswith("Your goal: ")


def _turns_until(env: BabyAIEnv, steps: int) -> None:
    while _world(env).step_count < steps:
        assert env.step("turn left").done is False


def test_a_late_success_or_the_step_limit_does_not_end_an_agentgym_episode(
        family: BabyAIFamily) -> None:
    env = family.create()
    env.reset(0)  # GoToRedBallGrey, seed 0: the red ball is in sight; max_steps 64
    assert _world(env).max_steps == 64
    quick = env.step("go to red ball 1")
    assert quick.done and quick.reward > 0.5 and quick.info["terminated"]

    env.reset(0)
    _turns_until(env, 36)  # four full turns: the same pose, 36 of 64 steps spent
    late = env.step("go to red ball 1")
    # minigrid: success, shaped reward 1 - 0.9 * steps / 64 <= 0.5; AgentGym plays on
    assert late.info["terminated"] and 0 < late.reward <= 0.5
    assert late.done is False and late.score == late.reward
    assert "The task is completed." in late.observation
    _turns_until(env, 64)
    limit = env.step("turn left")
    assert limit.info["truncated"] and limit.done is False
    assert "step limit" not in limit.observation
    assert env.step("turn right").done is False  # still playable past minigrid's limit


def test_minigrid_episode_end_is_an_option() -> None:
    family = BabyAIFamily(episode_end="minigrid")
    env = family.create()
    env.reset(0)
    _turns_until(env, 36)
    late = env.step("go to red ball 1")
    assert late.done and 0 < late.reward <= 0.5
    env.reset(0)
    while _world(env).step_count < 63:
        env.step("turn left")
    limit = env.step("turn left")
    assert limit.done and limit.info["truncated"] and not limit.info["terminated"]
    assert limit.observation.split("\n")[1] == " The step limit of this task is reached."
    with pytest.raises(ValueError, match="episode_end must be 'agentgym' or 'minigrid', got 'x'"):
        BabyAIFamily(episode_end="x")  # type: ignore[arg-type]


def test_invalid_action_observation_is_agentgyms_and_changes_nothing(family: BabyAIFamily) -> None:
    env = family.create()
    first = env.reset(1)
    world = _world(env)
    before = (tuple(world.agent_pos), world.agent_dir, world.step_count)
    actions = first[first.index("\nAvailable actions: ["):]
    for action in ("fly away", "Thought: I should go"):
        with pytest.raises(InvalidAction) as refused:
            env.step(action)
        answer = env.invalid_action_observation(action, str(refused.value))
        assert answer == NOT_RECOGNIZED + actions
        assert env.observation() == f"Your goal: {env.goal}\n{answer}"
    assert env.invalid_action_observation("", "action is empty") == NO_CHANGE + actions
    assert NO_CHANGE == "No change in state."
    assert NOT_RECOGNIZED == "The action is not recognized. Please check valid actions."
    assert (tuple(world.agent_pos), world.agent_dir, world.step_count) == before
    assert env.step("turn left").observation != answer  # the game goes on from where it was


def _png_pixels(png: bytes) -> np.ndarray:
    """Decode an 8-bit RGB, unfiltered PNG by the spec (signature, chunk CRCs, IHDR, IDAT)."""
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    at, chunks = 8, {}
    while at < len(png):
        (length,) = struct.unpack(">I", png[at:at + 4])
        kind, data = png[at + 4:at + 8], png[at + 8:at + 8 + length]
        (crc,) = struct.unpack(">I", png[at + 8 + length:at + 12 + length])
        assert zlib.crc32(kind + data) & 0xFFFFFFFF == crc, kind
        chunks[kind] = chunks.get(kind, b"") + data
        at += 12 + length
    width, height, depth, color, _, _, interlace = struct.unpack(">IIBBBBB", chunks[b"IHDR"])
    assert (depth, color, interlace) == (8, 2, 0) and b"IEND" in chunks
    rows = np.frombuffer(zlib.decompress(chunks[b"IDAT"]), np.uint8).reshape(height, -1)
    assert not rows[:, 0].any()  # filter type 0 on every row
    return rows[:, 1:].reshape(height, width, 3)


def test_render_is_agentgyms_png_data_url_of_the_grid(family: BabyAIFamily) -> None:
    env = family.create()
    with pytest.raises(RuntimeError, match="render before reset"):
        env.render()
    env.reset(5)
    picture = env.render()
    assert picture.startswith("data:image/png;base64,")
    pixels = _png_pixels(base64.b64decode(picture.removeprefix("data:image/png;base64,")))
    world = _world(env)
    frame = world.get_frame(highlight=True, tile_size=world.tile_size)
    assert pixels.shape == (world.height * world.tile_size, world.width * world.tile_size, 3)
    assert np.array_equal(pixels, frame)
    env.step("turn left")
    assert env.render() != picture  # it draws the world as it is now

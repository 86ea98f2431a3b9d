"""BabyAI in text: AgentGym's task ids, view sentences, action names, and a planner whose
macro actions really reach, pick up and open what they name in minigrid."""

from __future__ import annotations

import re

import gymnasium as gym
import numpy as np
import pytest
from minigrid.core.constants import COLOR_TO_IDX, OBJECT_TO_IDX, STATE_TO_IDX

from env_servers.envs.babyai import (
    DROP,
    FORWARD,
    LEFT,
    LEVELS,
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
    for bad in (-1, 40_000):
        with pytest.raises(TaskOutOfRange, match=f"data_idx {bad} is out of range"):
            family.task(bad)
    assert BabyAIFamily(seeds_per_level=3).num_tasks() == 120


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
    result = env.step("pickup purple box 3")
    assert result.observation.startswith("You cannot pickup purple box 3 now")
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

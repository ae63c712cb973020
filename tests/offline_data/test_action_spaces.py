"""The env action space a dataset's discretizer decodes into equals the env's own."""

import numpy as np
import pytest
from gymnasium import spaces

from offline_data.action_spaces import check_action_space, space_for_discretizer
from offline_data.discretize import discretizer_for_space


@pytest.mark.parametrize("space", [
    spaces.Discrete(4), spaces.Discrete(3, start=-1), spaces.MultiBinary(3),
    spaces.MultiBinary((2, 3)), spaces.MultiDiscrete([3, 5]),
    spaces.Box(-1.0, 1.0, (2,), np.float32),
])
def test_the_decoded_space_is_the_envs_own(space):
    rebuilt = space_for_discretizer(discretizer_for_space(space))
    assert rebuilt == space and type(rebuilt) is type(space)
    check_action_space(discretizer_for_space(space), space, "policy")


def test_a_one_dimensional_multibinary_is_what_sb3_accepts():
    from stable_baselines3.common.preprocessing import get_action_dim

    rebuilt = space_for_discretizer(discretizer_for_space(spaces.MultiBinary(3)))
    assert isinstance(rebuilt.n, int) and get_action_dim(rebuilt) == 3


def test_another_envs_space_is_refused():
    with pytest.raises(ValueError, match="use the env the policy was trained on"):
        check_action_space(discretizer_for_space(spaces.Discrete(4)), spaces.Discrete(6), "policy")

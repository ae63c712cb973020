import json

import numpy as np
import pytest
from gymnasium import spaces

from offline_data.discretize import (
    CategoricalDiscretizer,
    UniformDiscretizer,
    discretizer_for_space,
    discretizer_from_spec,
)


def _roundtrip_spec(d):
    return discretizer_from_spec(json.loads(json.dumps(d.to_spec())))


@pytest.mark.parametrize("space", [
    spaces.Discrete(4),
    spaces.Discrete(5, start=-2),
    spaces.MultiDiscrete([3, 2, 7]),
    spaces.MultiBinary(6),
])
def test_categorical_roundtrip_is_exact(space):
    space.seed(0)
    actions = np.stack([np.asarray(space.sample()) for _ in range(200)])
    for d in (discretizer_for_space(space), _roundtrip_spec(discretizer_for_space(space))):
        tokens = d.encode(actions)
        assert tokens.dtype == np.int64 and tokens.shape == (200, d.num_dims)
        assert np.all(tokens >= 0) and np.all(tokens < np.asarray(d.vocab_sizes))
        decoded = d.decode(tokens)
        assert decoded.shape == actions.shape
        np.testing.assert_array_equal(decoded, actions)
        assert all(space.contains(a) for a in decoded[:20])


@pytest.mark.parametrize("buckets", [11, 500, [11, 3, 500]])
def test_uniform_decode_error_at_most_half_a_bucket(buckets):
    low, high = np.array([-1.0, 0.0, -5.0], np.float32), np.array([1.0, 2.0, 5.0], np.float32)
    space = spaces.Box(low, high)
    d = discretizer_for_space(space, buckets=buckets)
    d2 = _roundtrip_spec(d)
    rng = np.random.default_rng(0)
    actions = rng.uniform(space.low, space.high, size=(5000, 3))
    actions[:3] = [space.low, space.high, (space.low + space.high) / 2]  # edges included
    for dd in (d, d2):
        tokens = dd.encode(actions)
        assert tokens.max(axis=0).tolist() <= [v - 1 for v in dd.vocab_sizes]
        err = np.abs(dd.decode(tokens).astype(np.float64) - actions)
        half = (space.high - space.low) / np.asarray(dd.vocab_sizes) / 2
        assert np.all(err <= half + 1e-6), (err.max(axis=0), half)
        # Bucket centres are fixed points.
        np.testing.assert_array_equal(dd.encode(dd.decode(tokens)), tokens)
    assert d.decode(d.encode(actions)).dtype == np.float32


def test_uniform_clips_out_of_range_and_paper_vocab():
    d = UniformDiscretizer([-1.0] * 4, [1.0] * 4, 500)
    assert d.vocab_sizes == (500,) * 4 and d.num_dims == 4
    np.testing.assert_array_equal(d.encode(np.array([[-3.0, 3.0, -1.0, 1.0]])), [[0, 499, 0, 499]])


def test_spec_is_json_and_rebuilds_same_type():
    d = discretizer_for_space(spaces.Box(-1, 1, (2, 2)), buckets=11)
    spec = json.loads(d.to_json())
    assert spec["type"] == "uniform"
    assert isinstance(discretizer_from_spec(d.to_json()), UniformDiscretizer)
    a = np.zeros((3, 2, 2), np.float32)
    assert d.decode(d.encode(a)).shape == (3, 2, 2)
    c = discretizer_for_space(spaces.Discrete(3))
    assert isinstance(discretizer_from_spec(c.to_spec()), CategoricalDiscretizer)


def test_continuous_space_without_buckets_is_refused():
    with pytest.raises(ValueError, match="needs a discretizer spec"):
        discretizer_for_space(spaces.Box(-1, 1, (4,)), buckets=None)


def test_bad_inputs():
    with pytest.raises(ValueError, match="finite bounds"):
        discretizer_for_space(spaces.Box(-np.inf, np.inf, (2,)), buckets=11)
    with pytest.raises(TypeError, match="no discretizer"):
        discretizer_for_space(spaces.Text(5))
    with pytest.raises(ValueError, match="unknown discretizer type"):
        discretizer_from_spec({"type": "mu-law"})
    with pytest.raises(ValueError, match="not valid JSON"):
        discretizer_from_spec("{not json")
    d = discretizer_for_space(spaces.Discrete(4))
    with pytest.raises(ValueError, match="out of range"):
        d.decode(np.array([[4]]))
    with pytest.raises(ValueError, match="outside"):
        d.encode(np.array([7]))
    u = UniformDiscretizer([-1.0], [1.0], 11)
    with pytest.raises(ValueError, match="NaN"):
        u.encode(np.array([[np.nan]]))
    with pytest.raises(ValueError, match="buckets"):
        UniformDiscretizer([-1.0, -1.0], [1.0, 1.0], [11, 11, 11])
    with pytest.raises(ValueError, match=">= 2"):
        UniformDiscretizer([-1.0], [1.0], 1)


def test_button_dims_decode_exactly():
    d = UniformDiscretizer([0.0, -1.0, 0.0], [1.0, 1.0, 1.0], 11, button_dims=[0, 2])
    assert d.vocab_sizes == (2, 11, 2)
    actions = np.array([[1.0, -0.3, 0.0], [0.0, 0.99, 1.0]], np.float32)
    d2 = discretizer_from_spec(d.to_json())
    out = d2.decode(d2.encode(actions))
    np.testing.assert_array_equal(out[:, [0, 2]], actions[:, [0, 2]])
    assert np.all(np.abs(out[:, 1] - actions[:, 1]) <= 2 / 11 / 2 + 1e-6)

import doctest

import pytest

import worldmodels.presets as presets
from worldmodels.gpt import GPT, GPTConfig


def test_doctests():
    result = doctest.testmod(presets)
    assert result.failed == 0 and result.attempted > 0


@pytest.mark.parametrize("name", [*presets.LADDER, "2M", "rt1-0.2M"])
def test_param_count_matches_the_model(name):
    s = presets.get_size(name)
    model = GPT(GPTConfig(n_layer=s.n_layer, n_head=s.n_head, n_embd=s.n_embd, vocab_size=260,
                          block_size=170))
    assert model.num_params() == presets.param_count(name, 260, 170)


def test_ladder_spans_3k_to_2M_in_order():
    counts = [presets.param_count(n, 260, 170) for n in presets.LADDER]
    assert counts == sorted(counts)
    assert 3e3 < counts[0] < 6e3 and 1.5e6 < counts[-1] < 2.5e6
    # neighbouring sizes at least 1.5 times apart: distinct points on a log-N axis
    assert all(b > 1.5 * a for a, b in zip(counts, counts[1:], strict=False))


def test_paper_table2_shapes_reproduce_paper_N_without_positions():
    # the paper's N matches 12 L E^2 + V E (its Table 2 is for the tokenized models, V ~ 4k)
    for name, s in presets.SIZE_PRESETS.items():
        if s.source == "paper Table 2":
            n = 12 * s.n_layer * s.n_embd**2 + 4096 * s.n_embd
            assert abs(n - s.paper_params) / s.paper_params < 0.065, name  # 4M: 6.3% below


def test_unknown_names_list_the_choices():
    with pytest.raises(ValueError, match="unknown model size 'huge'.*894M.*s10k"):
        presets.get_size("huge")
    with pytest.raises(ValueError, match="unknown preset.*wm-token-540"):
        presets.get_task_preset("wm-token-999")
    with pytest.raises(ValueError, match="no learning rate for size '2M'"):
        presets.get_task_preset("wm-token-256").learning_rate("2M")
    with pytest.raises(ValueError, match="no preset trains task 'bc-token' at size '894M'"):
        presets.preset_for("bc-token", "894M")


def test_default_presets():
    assert presets.preset_for("wm-token", "s100k").name == "ladder"
    assert presets.preset_for("bc-cnn", "s100k").name == "ladder-cnn"
    assert presets.preset_for("bc-token", "s100k").name == "ladder-bc-token"
    assert presets.preset_for("wm-token", "4M").name == "wm-token-540"
    assert presets.preset_for("wm-token", "15M").name == "wm-token-256"
    assert presets.preset_for("bc-cnn", "52M").learning_rate("52M") == 3e-4
    # the CPU ladder's BC-CNN runs at 0.4x the token ladder's rates (its small CNNs stall higher)
    for size in presets.LADDER:
        cnn = presets.preset_for("bc-cnn", size).learning_rate(size)
        assert cnn == pytest.approx(0.4 * presets.preset_for("wm-token", size).learning_rate(size))
    assert presets.preset_for("bc-cnn", "s30k").learning_rate("s30k") == 2e-3
    for size in presets.LADDER:  # BC-Token's sparse updates: half the ladder's rates
        bc = presets.preset_for("bc-token", size).learning_rate(size)
        assert bc == pytest.approx(0.5 * presets.preset_for("wm-token", size).learning_rate(size))
    assert presets.get_task_preset("wm-token-256").update_tokens("894M") == 2_088_960

"""Fixed-shape decode step: the same hidden states, cache contents and imagined tokens as today's
variable-shape ``row_forward`` path, in every mode (compiled and CUDA-graph tests included)."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
import torch
from gymnasium import spaces

from offline_data.discretize import discretizer_for_space  # noqa: E402
from tests.helpers.decode_steps import check_against_row_forward, padded_cache, small_gpt
from tests.helpers.world_models import tiny_episodes, tiny_model, tiny_tokenizer
from worldmodels.decode_math import sample_image_ids  # noqa: E402
from worldmodels.decode_step import DecodeStep, resolve_decode_mode  # noqa: E402
from worldmodels.row_cache import row_forward  # noqa: E402
from worldmodels.simulator import SimulatorConfig, TokenWorldModelSimulator  # noqa: E402

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


def tiny_simulator(num_envs=1, seed=0, device="cpu", **config):
    vq = tiny_tokenizer()
    episodes = tiny_episodes(vq)  # encoded on the CPU, before the tokenizer moves
    return TokenWorldModelSimulator(tiny_model().to(device), vq.to(device),
                                    discretizer_for_space(spaces.Discrete(4)), num_envs,
                                    episodes, SimulatorConfig(burn_in=2, **config), seed=seed)


def _imagine(sim, steps=5):
    """Frames, rewards and terminations of a few steps with a reset of row 1 in between."""
    rows = np.arange(sim.num_envs)
    out = [sim.reset(rows)]
    for t in range(steps):  # a context of 4 steps after a burn-in of 2: the window slides
        step = sim.step((rows + t) % 4)
        out += [step.observations, step.rewards, step.terminations]
        if t == 1:
            out.append(sim.reset(np.array([1])))
    return out


@pytest.mark.parametrize("fused_forms", [False, True], ids=["sdpa", "reductions"])
def test_eager_step_equals_row_forward_with_padded_and_restarted_rows(fused_forms):
    check_against_row_forward(small_gpt(), batch=3, mode="eager", fused_forms=fused_forms)


@pytest.mark.parametrize("fused_forms", [False, True], ids=["sdpa", "reductions"])
def test_a_step_attending_over_part_of_the_cache_is_the_same_step(fused_forms):
    # three widths of a 40-column cache: the rows' columns 11..19 cross from the first (14) to
    # the second (27), and a restarted row's columns lie inside them
    step = check_against_row_forward(small_gpt(), batch=3, mode="eager", fused_forms=fused_forms,
                                      widths=3)
    assert step.widths == [14, 27, 40] and step.width(13) == 14 and step.width(14) == 27
    assert DecodeStep(small_gpt(), padded_cache(small_gpt(), 1), mode="eager").widths == [40]
    with pytest.raises(ValueError, match="widths must be >= 1"):
        DecodeStep(small_gpt(), padded_cache(small_gpt(), 1), mode="eager", widths=0)


@pytest.mark.parametrize("temperature", [0.0, 1.0], ids=["greedy", "seeded"])
def test_imagined_frames_identical_to_variable_shape_path_and_recompute(temperature):
    # Same seed and actions, a reset and a window slide in between: the same frames, rewards
    # and terminations whether a token is decoded by the fixed-shape step, by the variable-shape
    # row_forward (the previous path) or by recomputing the whole context.
    runs = [_imagine(tiny_simulator(num_envs=2, seed=3, temperature=temperature, **config))
            for config in ({"decode": "eager"}, {"decode": "rows"}, {"use_cache": False})]
    for other in runs[1:]:
        for a, b in zip(runs[0], other, strict=True):
            np.testing.assert_allclose(a, b, atol=1e-6)


@pytest.mark.parametrize("top_k", [None, 3])
def test_frame_step_decodes_like_the_token_step(top_k):
    # decode_frame (what the compiled step runs) against the same step built from single tokens
    # and the sampler, from the same cache and uniforms: same ids, hidden states and cache
    gpt = small_gpt()
    a, b = padded_cache(gpt, 3), padded_cache(gpt, 3)
    frames, tokens = DecodeStep(gpt, a, mode="eager"), DecodeStep(gpt, b, mode="eager")
    actions = torch.tensor([[40, 41], [42, 43], [44, 45]])
    u = torch.rand(3, 5, 30, generator=torch.Generator().manual_seed(4))
    z, hidden = frames.frame(actions, u, image_vocab=30, tokens_per_frame=5, top_k=top_k)
    h = tokens(actions[:, 0])
    h = tokens(actions[:, 1])
    torch.testing.assert_close(hidden, h)
    want = []
    for k in range(5):
        want.append(sample_image_ids(gpt.lm_head(h), u[:, k], 30, 1.0, top_k))
        h = tokens(want[-1])
    assert torch.equal(z, torch.stack(want, 1)) and int(z.max()) < 30
    assert a.length == b.length and torch.equal(a.tokens, b.tokens)
    torch.testing.assert_close(a.keys[1], b.keys[1])
    with pytest.raises(ValueError, match="slide it first"):
        a.length = a.capacity - 3
        frames.frame(actions, u, image_vocab=30, tokens_per_frame=5)


def test_sampler_draws_each_id_with_its_probability():
    logits = torch.tensor([[0.0, 1.0, 2.0, -1e9, 0.5]]).repeat(20000, 1)
    u = torch.rand(20000, 4, generator=torch.Generator().manual_seed(0))
    ids = sample_image_ids(logits, u, image_vocab=4)  # id 4 lies outside the image vocabulary
    p = torch.softmax(torch.tensor([0.0, 1.0, 2.0]), 0)
    freq = torch.bincount(ids, minlength=4).double() / 20000
    assert freq[3] == 0 and torch.allclose(freq[:3], p.double(), atol=0.012)
    assert torch.equal(sample_image_ids(logits[:2], u[:2], 4, temperature=0), torch.tensor([2, 2]))
    top1 = sample_image_ids(logits[:100], u[:100], 4, top_k=1)
    assert bool((top1 == 2).all())
    assert int(sample_image_ids(logits[:1], torch.tensor([[0.0, 0.0, 0.5, 0.0]]), 4)) == 2


def test_bfloat16_cache_imagines():
    sim = tiny_simulator(num_envs=2, cache_dtype="bfloat16", decode="eager")
    out = _imagine(sim)
    assert sim.cache.keys[0].dtype == torch.bfloat16
    assert out[-3].shape[0] == 2 and np.isfinite(out[-2]).all()


def test_bad_modes_and_inputs_raise():
    gpt = small_gpt()
    cache = padded_cache(gpt, 2)
    with pytest.raises(ValueError, match="decode mode must be one of"):
        DecodeStep(gpt, cache, mode="fast")
    with pytest.raises(ValueError, match="needs a CUDA device"):
        resolve_decode_mode("cuda-graph", torch.device("cpu"))
    assert resolve_decode_mode("auto", torch.device("cpu")) == "compile"
    step = DecodeStep(gpt, cache, mode="eager")
    with pytest.raises(ValueError, match="one token per row"):
        step(torch.zeros(3, dtype=torch.long))
    cache.length = cache.capacity
    with pytest.raises(ValueError, match="cache is full"):
        step(torch.zeros(2, dtype=torch.long))
    with pytest.raises(ValueError, match="decode attention must be one of"):
        DecodeStep(gpt, cache, mode="eager", attention="flash")
    with pytest.raises(ValueError, match="needs a CUDA device and the triton package"):
        DecodeStep(gpt, cache, mode="eager", attention="triton")
    with pytest.raises(ValueError, match="SimulatorConfig.decode_attention"):
        tiny_simulator(decode_attention="flash")
    with pytest.raises(ValueError, match="SimulatorConfig.decode"):
        tiny_simulator(decode="fast")
    with pytest.raises(ValueError, match="SimulatorConfig.cache_dtype"):
        tiny_simulator(cache_dtype="float16")


def test_failed_compilation_falls_back_to_eager():
    gpt = small_gpt()
    ref, cache = padded_cache(gpt, 2), padded_cache(gpt, 2)
    step = DecodeStep(gpt, cache, mode="compile")

    def no_compiler(*args, **kwargs):
        raise RuntimeError("no C++ compiler found")

    step._fn = step._compiled = no_compiler
    ids = torch.tensor([3, 4])
    with pytest.warns(UserWarning, match="decoding eagerly instead"):
        got = step(ids)
    torch.testing.assert_close(got, row_forward(gpt, ref, ids[:, None])[:, -1],
                               atol=2e-5, rtol=2e-5)
    assert step.mode == "eager" and cache.length == ref.length


@pytest.mark.slow
@pytest.mark.parametrize("temperature", [0.0, 1.0], ids=["greedy", "seeded"])
def test_compiled_frame_imagination_equals_eager(temperature):
    # the whole imagined step compiled (one graph per sampling setting) against eager decoding
    runs = [_imagine(tiny_simulator(num_envs=1, seed=3, temperature=temperature, decode=decode))
            for decode in ("eager", "compile")]
    for a, b in zip(*runs, strict=True):
        np.testing.assert_allclose(a, b, atol=1e-5)


@pytest.mark.slow
def test_compiled_step_equals_row_forward():
    # torch.compile on CPU at batch 1 (matrix-vector products as fused reductions), starting
    # eager in 'auto' mode and switching after 3 tokens (one compilation: tens of seconds).
    step = check_against_row_forward(small_gpt(), batch=1, mode="auto", compile_after=3)
    assert step.mode == "compile" and step.compile_seconds is not None


@pytest.mark.slow
def test_compiled_step_over_several_widths_compiles_once():
    # the widths differ only in the cache's column count, which the compiled step holds symbolic
    torch._dynamo.utils.counters.clear()
    step = check_against_row_forward(small_gpt(), batch=2, mode="compile", widths=3)
    assert step.mode == "compile" and step.width(10) == 14 and step.width(18) == 27
    assert torch._dynamo.utils.counters["stats"]["unique_graphs"] == 1


@cuda
def test_cuda_graph_step_equals_row_forward():
    # the compiled step captured once per width (4 of the 40 columns: columns 11..22 use two)
    step = check_against_row_forward(small_gpt("cuda"), batch=3, mode="cuda-graph", steps=12)
    assert step.mode == "cuda-graph" and sorted(step._graphs) == [20, 30]


@cuda
@pytest.mark.parametrize("attention", ["reductions", "triton"])
@pytest.mark.parametrize("temperature", [0.0, 1.0], ids=["greedy", "seeded"])
def test_cuda_graph_imagination_matches_eager(temperature, attention):
    if attention == "triton" and importlib.util.find_spec("triton") is None:
        pytest.skip("needs the triton package")
    runs = [_imagine(tiny_simulator(num_envs=4, seed=3, device="cuda", temperature=temperature,
                                    decode=decode, decode_attention=att))
            for decode, att in (("eager", None), ("cuda-graph", attention))]
    for a, b in zip(*runs, strict=True):
        np.testing.assert_allclose(a, b, atol=1e-6)


@cuda
def test_cuda_bfloat16_cache_with_graph():
    sim = tiny_simulator(num_envs=4, device="cuda", cache_dtype="bfloat16", decode="cuda-graph")
    out = _imagine(sim)
    assert sim.cache.keys[0].dtype == torch.bfloat16 and np.isfinite(out[-2]).all()

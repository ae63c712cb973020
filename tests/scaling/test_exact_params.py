"""N from shapes alone (Task.exact_params, the configs' num_params) equals the built model's N."""

import pytest

from agents.bc_cnn import BCCNN, BCCNNConfig
from agents.bc_cnn_nets import FrameCNN
from agents.bc_cnn_shapes import frame_cnn_params
from offline_data.tokens import TokenLayout, TokenShards
from scaling.study.adapters.sizes import size_params
from scaling.study.paths import tokens_dir
from scaling.study.spec import DatasetSpec, StudySpec, TaskSweep, TokenizerSpec
from scaling.tasks import TASKS, model_params
from tests.helpers.token_shards import write_shards
from tests.helpers.tokenizers import make_dataset
from worldmodels import presets
from worldmodels.gpt import GPTConfig, count_params
from worldmodels.token_model import TokenModel, TokenModelConfig

LAYOUTS = [TokenLayout(16, 256, (4,)), TokenLayout(64, 512, (500, 500, 500, 500))]


@pytest.mark.parametrize("size", presets.LADDER)
@pytest.mark.parametrize("task", ["wm-token", "bc-token"])
@pytest.mark.parametrize("heads", [False, True])
@pytest.mark.parametrize("layout", LAYOUTS, ids=["k16", "k64"])
def test_token_models(size, task, heads, layout):
    s = presets.get_size(size)
    seq_len = 10 if layout.tokens_per_frame == 16 else 2
    cfg = TokenModelConfig.for_layout(layout, s.n_layer, s.n_head, s.n_embd, seq_len,
                                      task="wm" if task == "wm-token" else "bc",
                                      reward_head=heads, termination_head=heads)
    model = TokenModel(cfg)
    assert (model.reward_head is not None) == heads
    n = model.num_params()  # the transformer with its embeddings: the heads are not part of N
    assert cfg.num_params() == n == TASKS[task].exact_params(size, layout, seq_len)
    assert n == count_params(model.gpt)


def test_token_model_without_biases():
    cfg = TokenModelConfig(gpt=GPTConfig(n_layer=2, n_head=2, n_embd=24, block_size=34,
                                         vocab_size=20, bias=False),
                           tokens_per_frame=16, image_vocab=16, action_vocab_sizes=(4,))
    assert cfg.num_params() == TokenModel(cfg).num_params()


@pytest.mark.parametrize("size", [*presets.LADDER, "2M"])
@pytest.mark.parametrize("block", ["impala", "convnext"])
@pytest.mark.parametrize("image_size", [32, 64])
def test_bc_cnn(size, block, image_size):
    s = presets.get_size(size)
    vocab = (3, 11, 11)
    if size in presets.LADDER:  # what FrameDataSource.model_config builds for the task builder
        cfg = BCCNNConfig.for_width(s.n_layer, s.n_head, s.n_embd, 10, vocab,
                                    image_size=image_size, cnn_block=block)
    else:  # the paper's CNN
        cfg = BCCNNConfig(gpt=GPTConfig(n_layer=s.n_layer, n_head=s.n_head, n_embd=s.n_embd,
                                        block_size=10, vocab_size=0),
                          action_vocab_sizes=vocab, image_size=image_size, cnn_block=block)
    layout = TokenLayout(16, 256, vocab)  # BC-CNN reads only the action vocabularies
    n = BCCNN(cfg).num_params()
    assert cfg.num_params() == n == TASKS["bc-cnn"].exact_params(size, layout, 10,
                                                                 cnn_block=block)


def test_bc_cnn_odd_shapes():
    cfg = BCCNNConfig(gpt=GPTConfig(n_layer=1, n_head=1, n_embd=8, block_size=3, vocab_size=0,
                                    bias=False),
                      action_vocab_sizes=(2,), image_size=16, cnn_channels=(5, 7), cnn_pool=3,
                      cnn_embd=10, cnn_block="convnext")
    assert cfg.num_params() == BCCNN(cfg).num_params()
    for block in ("impala", "convnext"):
        cnn = FrameCNN((5, 7), 3, 10, block)
        assert frame_cnn_params((5, 7), 3, 10, block) == count_params(cnn)
    with pytest.raises(ValueError, match="cnn_block='resnet'; choose one of impala, convnext"):
        frame_cnn_params((5,), 2, 4, "resnet")


def test_char_lm_has_no_shape_count():
    with pytest.raises(ValueError, match="char-lm is trained by its own script"):
        TASKS["char-lm"].exact_params("s10k", LAYOUTS[0], 10)


def test_equals_model_params_on_token_shards(tmp_path):
    write_shards(tmp_path / "tokens", episodes=(4, 2), length=12)
    layout = TokenShards.open(tmp_path / "tokens").layout
    for task in ("wm-token", "bc-token"):
        built = model_params(task, "s30k", str(tmp_path / "tokens"), seq_len=2)
        assert TASKS[task].exact_params("s30k", layout, 2) == built


def test_size_params_equals_the_built_model_on_the_study_data(tmp_path):
    dataset = "embscale/exact-n/synthetic-v0"
    make_dataset(dataset, num_episodes=4, steps=12, size=32)
    spec = StudySpec(name="exact-n", runs_dir=str(tmp_path), dataset=DatasetSpec(id=dataset),
                     tokenizer=TokenizerSpec(tokens_per_frame=4, codebook_size=16),
                     tasks=[TaskSweep(task=t, sizes=["s10k", "s30k"], tokens=1e5)
                            for t in ("wm-token", "bc-cnn")])
    before = size_params("wm-token", "s30k", spec)  # from the spec: no shards yet
    write_shards(tokens_dir(spec), episodes=(4, 2), length=12)  # K=4, V=16, one 3-way action
    assert size_params("wm-token", "s30k", spec) == model_params("wm-token", "s30k",
                                                                 str(tokens_dir(spec)))
    assert before != size_params("wm-token", "s30k", spec)  # the shards' 3 actions, not 4
    for size in ("s10k", "s30k"):
        assert size_params("bc-cnn", size, spec) == model_params("bc-cnn", size, dataset)
    # a task's seq_len and cnn_block overrides shape the model it trains, so they count too
    spec.tasks[0].overrides = {"seq_len": 2}
    spec.tasks[1].overrides = {"seq_len": 3, "cnn_block": "convnext"}
    assert size_params("wm-token", "s30k", spec) == model_params(
        "wm-token", "s30k", str(tokens_dir(spec)), seq_len=2)
    assert size_params("bc-cnn", "s10k", spec) == model_params(
        "bc-cnn", "s10k", dataset, seq_len=3, cnn_block="convnext")

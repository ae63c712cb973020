"""Loss vs return: a worker's kept vector env plays exactly as a new one for every checkpoint."""

import numpy as np

import agents.policies
from scaling.study.loss_vs_return import evaluate_checkpoint, make_eval_env
from scaling.study.spec import ReturnStudySpec


class _FramePolicy:
    """Acts from the frame alone (no RNG of its own): equal trajectories give equal actions.

    ``seen`` sums every frame it was shown, a fingerprint of the whole evaluation.
    """

    def __init__(self):
        self.seen, self.calls = 0, 0

    def predict(self, observation, state=None, episode_start=None, deterministic=False):
        obs = np.asarray(observation).reshape(len(observation), -1).astype(np.int64)
        self.seen += int((obs * np.arange(1, obs.shape[1] + 1)).sum())
        self.calls += 1  # every action in turn, so that the paddle moves and the ball is served
        return ((obs.sum(1) // 7 + self.calls) % 4).astype(np.int64), state


def test_a_kept_env_seeded_again_plays_as_a_new_one(monkeypatch):
    policies = []

    def load_policy(*args, **kwargs):
        policies.append(_FramePolicy())
        return policies[-1]

    monkeypatch.setattr(agents.policies, "load_policy", load_policy)
    spec = ReturnStudySpec(episodes=3, num_envs=2, max_episode_steps=40, seed=3)
    fresh = evaluate_checkpoint("unused.pt", spec)  # a new env, closed afterwards
    venv = make_eval_env(spec.env_id, spec.num_envs, spec.max_episode_steps, seed=99)
    try:
        # The first evaluation leaves an env mid-episode; the second starts from its seed again.
        kept = [evaluate_checkpoint("unused.pt", spec, venv=venv) for _ in range(2)]
    finally:
        venv.close()
    for got in kept:
        assert got["returns"] == fresh["returns"] and got["lengths"] == fresh["lengths"]
    assert policies[1].seen == policies[2].seen == policies[0].seen  # the very same frames
    evaluate_checkpoint("unused.pt", ReturnStudySpec(episodes=3, num_envs=2,
                                                     max_episode_steps=40, seed=4))
    assert policies[3].seen != policies[0].seen  # another seed: other frames (sticky actions)

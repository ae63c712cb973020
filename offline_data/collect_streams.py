"""Collect one Minari dataset from several env processes at once.

The emulator is what limits collection (ALE Breakout steps about 1,900 times a second on one
core; the demonstrator and the dataset writer add 15%), so a dataset of a few hundred thousand
frames takes minutes in one process. :func:`collect_streams` plays ``streams`` independent
*streams* of episodes, each in its own process with its own env and policy, and writes them into
one dataset in a fixed order: episode ``i`` is episode ``i // streams`` of stream
``i % streams``. Stream ``k`` is exactly what :func:`offline_data.collect.collect` writes with
seed :func:`stream_seed` ``(seed, k)`` (its first reset and its policy), so the dataset depends
on ``seed`` and ``streams`` and never on the machine's cores or timing. The dataset records both
(metadata ``collection_seed`` and ``collection_streams``); a different ``streams`` is a different
dataset, so give it a different id. With ``streams=1`` it writes exactly what ``collect`` writes
(seeded with ``seed`` itself; the callers need no other path). Where :func:`can_pipeline` allows
(an Atari env and a policy that reads the RAM, not the frames, on a machine with two cores), that
one stream is *pipelined*: a child process emulates and acts while this one makes the frames from
its raw screens and writes them (:mod:`offline_data.frame_pipe`), the same data at the emulator's
pace; otherwise it collects in this process.

The parent writes; the streams play ahead by at most two episodes each. ``max_total_steps`` is
applied in the dataset's order (the streams' surplus episodes are dropped), so the dataset ends
where a single stream writing the same episodes in that order would end. Writing is atomic as in
``collect``: a failure or an interrupt in any stream leaves no dataset.

Example:
    collect_streams("embscale/Breakout-v1", "scripted", 2900, "embscale/breakout/scripted-v4",
                    streams=2, policy_kwargs={"skill": (0.7, 1.0)}, max_total_steps=270_000)
"""

from __future__ import annotations

import logging
import os
import queue
import traceback
from collections.abc import Sequence
from typing import Any

import numpy as np

from offline_data.collect import (
    SCRIPTED_POLICIES,
    _policy_name,
    check_rendered,
    collect,
    episode_buffer,
    play_episode,
    register_scripted_policy,
    resolve_policy,
    write_episodes,
)
from offline_data.datasets import check_image_space
from offline_data.discretize import ActionDiscretizer, discretizer_for_space
from offline_data.frame_pipe import FramePipe
from offline_data.minari_writer import MinariWriter
from offline_data.processes import die_with_parent

logger = logging.getLogger(__name__)

AHEAD = 2
"""Episodes a stream may play ahead of the writer (bounds the memory held in transit)."""


def stream_seed(seed: int, stream: int) -> int:
    """The seed of stream ``stream`` of a collection seeded ``seed`` (distinct for every pair)."""
    return int(np.random.SeedSequence([int(seed), int(stream)]).generate_state(1)[0])


def collect_streams(env_id: str, policy: str, num_episodes: int, dataset_id: str, *,
                    streams: int = 2, policy_kwargs: dict | None = None,
                    skills: Sequence[float] | None = None, env_kwargs: dict | None = None,
                    seed: int = 0, max_steps_per_episode: int | None = None,
                    max_total_steps: int | None = None,
                    buckets: int | Sequence[int] | None = None,
                    discretizer: ActionDiscretizer | None = None, deterministic: bool = False,
                    description: str = "", overwrite: bool = False, progress: bool = True):
    """Roll out ``policy`` in ``streams`` processes and write one Minari dataset, atomically.

    Args:
        env_id: a registered gymnasium id (each stream makes its own env).
        policy: a policy spec for :func:`offline_data.collect.resolve_policy` (``scripted``,
            ``random``, ``sb3:...``, ``module:factory``), resolved in every stream with the
            stream's seed.
        num_episodes: episodes to collect (fewer if ``max_total_steps`` is reached first).
        dataset_id: ``embscale/<env>/<source>-vN``.
        streams: processes playing episodes (part of what the dataset is: see the module); 1
            collects in this process with ``seed`` itself, exactly as ``collect`` does.
        policy_kwargs: passed to the policy factory (e.g. ``skill=(0.7, 1.0)``).
        skills: per-episode skill values as in ``collect``; ``skills[i]`` goes to dataset
            episode ``i`` whichever stream plays it.
        env_kwargs: kwargs for ``gymnasium.make`` in every stream.
        max_steps_per_episode: cap per episode (the last step is marked truncated).
        max_total_steps: stop after the dataset episode that reaches this many steps in total.
        buckets: buckets per continuous action dimension for the discretizer spec.
        discretizer: explicit discretizer (overrides ``buckets``).
        deterministic: passed to ``predict``.
        description: stored in the dataset metadata.
        overwrite: replace an existing dataset with this id.
        progress: show a tqdm progress bar.
        seed: the collection's seed; stream ``k`` plays with :func:`stream_seed` ``(seed, k)``.

    Returns:
        The written ``minari.MinariDataset``.
    """
    if num_episodes < 1 or streams < 1:
        raise ValueError(f"num_episodes={num_episodes} and streams={streams} must be >= 1")
    if not isinstance(env_id, str) or not isinstance(policy, str):
        raise TypeError("collect_streams makes an env and a policy in every stream: give a "
                        f"gymnasium id and a policy spec string, not {type(env_id).__name__} "
                        f"and {type(policy).__name__} (offline_data.collect.collect takes "
                        "instances)")
    import envs  # gymnasium

    probe = envs.make(env_id, **(env_kwargs or {}))
    try:
        first = resolve_policy(policy, probe, seed=seed, **(policy_kwargs or {}))
        cap = max_steps_per_episode or getattr(probe.spec, "max_episode_steps", None)
        pipelined = streams == 1 and bool(cap) and can_pipeline(probe, first)
        if streams == 1 and not pipelined:  # this process, seeded with ``seed``: ``collect``
            return collect(probe, first, num_episodes, dataset_id, skills=skills, seed=seed,
                           max_steps_per_episode=max_steps_per_episode,
                           max_total_steps=max_total_steps, buckets=buckets,
                           discretizer=discretizer, deterministic=deterministic,
                           description=description, overwrite=overwrite, progress=progress)
        import gymnasium

        env_spec = gymnasium.registry.get(env_id)  # for ids a spawned process has not registered
        # the checks and the dataset's spaces, before any process starts
        check_image_space(probe.observation_space, what=f"env {env_id!r}")
        if discretizer is None:
            discretizer = discretizer_for_space(probe.action_space, buckets=buckets)
        make_frame = probe.unwrapped.frame_maker() if pipelined else None
        raw_shape = probe.unwrapped.raw_frame().shape if pipelined else None
        metadata = {"collection_seed": seed}
        if not pipelined:
            metadata["collection_streams"] = streams
        writer = MinariWriter(dataset_id, env=probe, discretizer=discretizer,
                              description=description, algorithm_name=_policy_name(first),
                              overwrite=overwrite, metadata=metadata)
    finally:
        probe.close()
    import multiprocessing as mp

    with writer:  # an error or an interrupt from here on leaves no dataset
        ctx = mp.get_context("spawn")
        per_stream = [len(range(k, num_episodes, streams)) for k in range(streams)]
        queues = [ctx.Queue(AHEAD) for _ in range(streams)]
        pipe = (FramePipe(writer.staging / "pipelined-screens.u8", cap, raw_shape, ctx)
                if pipelined else None)
        job = dict(env_id=env_id, env_spec=env_spec, env_kwargs=env_kwargs or {}, policy=policy,
                   policy_kwargs=policy_kwargs or {}, scripted=SCRIPTED_POLICIES.get(env_id),
                   skills=None if skills is None else [float(s) for s in skills],
                   max_steps_per_episode=max_steps_per_episode, deterministic=deterministic,
                   streams=streams, parent=os.getpid(), pipe=pipe)
        seeds = [seed] if pipelined else [stream_seed(seed, k) for k in range(streams)]
        procs = [ctx.Process(target=_stream_main, name=f"collect-stream-{k}", daemon=True,
                             args=(k, seeds[k], per_stream[k], job, queues[k]))
                 for k in range(streams) if per_stream[k]]
        try:
            for p in procs:
                p.start()
            episodes = (_next(procs[i % streams], queues[i % streams], i)
                        for i in range(num_episodes))
            desc = f"{dataset_id} ({streams} streams)"
            if pipe is not None:  # one pipelined stream: its screens become frames here
                episodes = (_made(e, pipe, make_frame, i, env_id) for i, e in enumerate(episodes))
                desc = dataset_id
            write_episodes(writer, episodes, num_episodes, max_total_steps, progress, desc)
            if pipe is not None:
                pipe.close()
            return writer.commit()
        finally:
            for p in procs:
                if p.is_alive():
                    p.terminate()
            for p in procs:
                if p.pid is not None:
                    p.join(timeout=10)
            for q in queues:
                q.cancel_join_thread()
                q.close()


def can_pipeline(env: Any, policy: Any) -> bool:
    """True when one stream may play in a child process while this one makes its frames.

    The env must hand out its raw screens (``defer_frames`` and ``frame_maker``, as
    ``envs.atari.AtariImageEnv``), the policy must not read observations
    (``reads_observations = False``, as the scripted RAM players) and the machine must have a
    second core for the frames.
    """
    base = getattr(env, "unwrapped", env)
    return (hasattr(base, "defer_frames") and hasattr(base, "frame_maker")
            and not getattr(policy, "reads_observations", True) and (os.cpu_count() or 1) > 1)


def _made(episode, pipe: FramePipe, make_frame, index: int, env_id: str):
    """A pipelined stream's episode (its length first) with its frames made from its screens."""
    length, *rest = episode
    frames = pipe.frames(index, length, make_frame)
    check_rendered(frames, index, env_id)
    return (frames, *rest)


def _next(proc, q, index: int):
    """Dataset episode ``index`` from its stream's queue, or the stream's failure as an error."""
    while True:
        try:
            kind, payload = q.get(timeout=1.0)
        except queue.Empty:
            if not proc.is_alive():
                raise RuntimeError(
                    f"collection stream {proc.name} exited (code {proc.exitcode}) before "
                    f"episode {index}; nothing was saved. Run again, or collect with "
                    "offline_data.collect.collect to see the failure in this process") from None
            continue
        if kind == "error":
            raise RuntimeError(f"collection stream {proc.name} failed at episode {index}; "
                               f"nothing was saved. Its traceback:\n{payload}")
        return payload


def _stream_main(stream: int, seed: int, episodes: int, job: dict[str, Any], q) -> None:
    """One stream (a spawned process): play ``episodes`` episodes, put each on ``q`` in order."""
    die_with_parent(job["parent"])
    try:
        import gymnasium

        import envs
        from envs.registration import register_envs

        register_envs()
        if job["env_id"] not in gymnasium.registry and job["env_spec"] is not None:
            gymnasium.registry[job["env_id"]] = job["env_spec"]  # registered in the parent only
        if job["scripted"] is not None:  # the parent's table (a spawned process starts empty)
            register_scripted_policy(job["env_id"], job["scripted"])
        env = envs.make(job["env_id"], **job["env_kwargs"])
        policy = resolve_policy(job["policy"], env, seed=seed, **job["policy_kwargs"])
        if hasattr(policy, "bind"):
            policy.bind(env)
        skills = job["skills"]
        frames = episode_buffer(env, job["max_steps_per_episode"])
        pipe = job["pipe"]  # a pipelined stream: its screens go to the parent, made there
        if pipe is not None:
            env.unwrapped.defer_frames(pipe)
        for j in range(episodes):
            index = j * job["streams"] + stream  # the episode's place in the dataset
            stream_skills = None if skills is None else [skills[index % len(skills)]]
            if pipe is not None:
                pipe.start_episode(j)
            episode, frames = play_episode(env, policy, frames, 0, stream_skills,
                                           seed if j == 0 else None,
                                           job["max_steps_per_episode"], job["deterministic"],
                                           check_frames=pipe is None)
            obs, *rest = episode
            if pipe is not None and pipe.written != len(obs):
                raise RuntimeError(f"the env handed out {pipe.written} screens for {len(obs)} "
                                   "observations; defer_frames must see every one")
            q.put(("episode", (obs.copy() if pipe is None else len(obs), *rest)))
        env.close()
    except BaseException:  # noqa: BLE001  (reported to the parent, which raises it)
        q.put(("error", traceback.format_exc()))

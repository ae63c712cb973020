"""Collection throughput (env steps/s) for Breakout and FetchPickAndPlace, against the raw env.

Measured in one run, per env:

* ``raw env``: ``env.step`` with random actions (the baseline);
* ``env + scripted``: the same loop with the scripted demonstrator choosing the actions;
* ``collect``: ``offline_data.collect.collect`` writing a Minari dataset (lossless frames) to a
  temporary directory, the whole call timed (demonstrator, frames, dataset write and commit); the
  env is built and the libraries imported beforehand, as for the raw-env baseline: those are
  one-time costs of a process, not of throughput.
* Breakout only: ``collect, N streams`` (``offline_data.collect_streams`` with ``--streams``
  processes, another draw of the data) and ``collect, 1 stream pipelined`` (``collect_streams``
  with one stream: the same data as ``collect``, emulated in a child process while the calling
  one makes the frames), each against ``collect``. These time the whole call, the child
  processes' start (about 2 s of imports) included, so give them ``--breakout-steps 50000`` or
  more to see the throughput rather than the start. ``--breakout-skill 0.7,1
  --breakout-episode-cap 2000`` plays the default study's episodes (longer than at skill 0-1).

The ratio of each row to the raw env is printed; Breakout's ``collect`` ratio should stay >= 0.5.
With ``--quality-episodes N`` it first prints the demonstrators' quality per skill: Breakout mean
return over N episodes, FetchPickAndPlace success rate over ``--fetch-quality-episodes``.

Example::

    python benchmarks/bench_collect.py --breakout-steps 5000 --fetch-steps 200
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

os.environ.setdefault("MUJOCO_GL", "osmesa")

import numpy as np  # noqa: E402

import envs  # noqa: E402
from agents.demonstrators import (  # noqa: E402
    ScriptedBreakoutPolicy,
    ScriptedFetchPickAndPlacePolicy,
)


def raw_env_speed(env_id: str, steps: int, size: int) -> float:
    """Steps/s of ``env.step`` with uniformly random actions (resets included)."""
    env = envs.make(env_id, size=size)
    env.action_space.seed(0)
    env.reset(seed=0)
    start = time.perf_counter()
    for _ in range(steps):
        _, _, terminated, truncated, _ = env.step(env.action_space.sample())
        if terminated or truncated:
            env.reset()
    elapsed = time.perf_counter() - start
    env.close()
    return steps / elapsed


def policy_loop_speed(env_id: str, policy, steps: int, size: int) -> float:
    """Steps/s of the env driven by ``policy.predict`` (what a collector does, minus writing)."""
    env = envs.make(env_id, size=size)
    policy.bind(env)
    obs, _ = env.reset(seed=0)
    episode_start = True
    start = time.perf_counter()
    for _ in range(steps):
        action, _ = policy.predict(obs, episode_start=episode_start)
        obs, _, terminated, truncated, _ = env.step(action)
        episode_start = terminated or truncated
        if episode_start:
            obs, _ = env.reset()
    elapsed = time.perf_counter() - start
    env.close()
    return steps / elapsed


def collect_speed(
    env_id: str, policy, steps: int, size: int, episode_cap: int, buckets: int | None
) -> float | None:
    """Steps/s of ``offline_data.collect.collect`` writing a Minari dataset, or None if absent."""
    try:
        import minari  # noqa: F401 - imported here so that import time is not timed
        import pyarrow.dataset  # noqa: F401

        from offline_data.collect import collect
    except ImportError as e:
        print(f"  (collect unavailable: {e})")
        return None
    env = envs.make(env_id, size=size)  # built outside the timer, like the raw-env baseline
    with tempfile.TemporaryDirectory() as root:
        os.environ["MINARI_DATASETS_PATH"] = root
        dataset_id = "embscale/bench/" + env_id.split("/")[-1].lower() + "-v0"
        start = time.perf_counter()
        dataset = collect(
            env,
            policy,
            num_episodes=10_000,
            dataset_id=dataset_id,
            max_steps_per_episode=episode_cap,
            max_total_steps=steps,
            buckets=buckets,
            progress=False,
        )
        elapsed = time.perf_counter() - start
        written = int(dataset.total_steps)
    env.close()
    return written / elapsed


def streams_speed(env_id: str, steps: int, size: int, episode_cap: int, streams: int,
                  skill: tuple[float, float] = (0.0, 1.0)) -> float:
    """Steps/s of ``collect_streams`` (``streams`` env processes, the scripted demonstrator).

    The whole call is timed, starting the processes included: unlike the rows above, the
    streams' imports are part of what a collection with streams costs.
    """
    from offline_data.collect_streams import collect_streams

    with tempfile.TemporaryDirectory() as root:
        os.environ["MINARI_DATASETS_PATH"] = root
        start = time.perf_counter()
        dataset = collect_streams(env_id, "scripted", 10_000, "embscale/bench/streams-v0",
                                  streams=streams, policy_kwargs={"skill": skill},
                                  env_kwargs={"size": size}, max_steps_per_episode=episode_cap,
                                  max_total_steps=steps, progress=False)
        elapsed = time.perf_counter() - start
        return int(dataset.total_steps) / elapsed


def bench(
    name: str,
    env_id: str,
    make_policy,
    steps: int,
    size: int,
    episode_cap: int,
    buckets: int | None = None,
    streams: int = 0,
    pipelined: bool = False,
    skill: tuple[float, float] = (0.0, 1.0),
) -> dict:
    """Measure and print the three speeds of one env."""
    # The raw speed is measured before and after the other rows and averaged, so that a change
    # of machine load during the run does not favour either side of the ratio.
    raw_before = raw_env_speed(env_id, steps, size)
    loop = policy_loop_speed(env_id, make_policy(), steps, size)
    coll = collect_speed(env_id, make_policy(), steps, size, episode_cap, buckets)
    par = streams_speed(env_id, steps, size, episode_cap, streams, skill) if streams > 1 else None
    piped = streams_speed(env_id, steps, size, episode_cap, 1, skill) if pipelined else None
    raw_after = raw_env_speed(env_id, steps, size)
    raw = (raw_before + raw_after) / 2
    print(f"{name} ({env_id}, {size}x{size}, {steps} steps)")
    print(
        f"  raw env (random actions)   {raw:9.1f} steps/s   1.00x"
        f"   (before {raw_before:.1f}, after {raw_after:.1f})"
    )
    print(f"  env + scripted policy      {loop:9.1f} steps/s   {loop / raw:.2f}x")
    if coll is not None:
        print(f"  collect -> Minari dataset  {coll:9.1f} steps/s   {coll / raw:.2f}x")
    if par is not None:
        vs_one = f"   ({par / coll:.2f}x one stream's collect)" if coll else ""
        print(f"  collect, {streams} streams         {par:9.1f} steps/s   {par / raw:.2f}x{vs_one}")
    if piped is not None:
        vs_one = f"   ({piped / coll:.2f}x collect in one process)" if coll else ""
        print(f"  collect, 1 stream pipelined {piped:8.1f} steps/s   {piped / raw:.2f}x{vs_one}")
    return {"raw": raw, "loop": loop, "collect": coll, "streams": par, "pipelined": piped}


def demonstrator_quality(episodes: int, fetch_episodes: int, size: int, skip_fetch: bool) -> None:
    """Print Breakout mean return and Fetch success rate per skill (full-length episodes)."""
    for skill in (0.0, 0.25, 0.5, 0.75, 0.9, 1.0):
        returns = _episodes(envs.BREAKOUT_ID, ScriptedBreakoutPolicy(skill, seed=0), episodes, size)
        print(
            f"Breakout skill {skill:.2f}: mean return {np.mean([r for r, _ in returns]):6.1f}"
            f" (min {min(r for r, _ in returns):.0f}, max {max(r for r, _ in returns):.0f},"
            f" {episodes} episodes)"
        )
    if skip_fetch:
        return
    for skill in (0.0, 0.5, 0.75, 1.0):
        policy = ScriptedFetchPickAndPlacePolicy(skill, seed=0)
        results = _episodes(envs.FETCH_PICK_AND_PLACE_ID, policy, fetch_episodes, size)
        rate = np.mean([success for _, success in results])
        print(f"FetchPickAndPlace skill {skill:.2f}: success {rate:.0%} ({fetch_episodes} eps)")


def _episodes(env_id: str, policy, episodes: int, size: int) -> list[tuple[float, float]]:
    """(return, final is_success) of ``episodes`` seeded episodes."""
    env = envs.make(env_id, size=size)
    policy.bind(env)
    results = []
    for episode in range(episodes):
        obs, info = env.reset(seed=1000 + episode)
        total, episode_start, done = 0.0, True, False
        while not done:
            action, _ = policy.predict(obs, episode_start=episode_start)
            obs, reward, terminated, truncated, info = env.step(action)
            total += reward
            episode_start, done = False, terminated or truncated
        results.append((total, float(info.get("is_success", 0.0))))
    env.close()
    return results


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; exit status 1 if Breakout collection falls below half the raw speed."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--breakout-steps", type=int, default=5000, help="env steps per row")
    parser.add_argument("--fetch-steps", type=int, default=200, help="env steps per row")
    parser.add_argument("--size", type=int, default=64, help="observation side in pixels")
    parser.add_argument("--skip-fetch", action="store_true", help="only benchmark Breakout")
    parser.add_argument("--streams", type=int, default=2,
                        help="also time Breakout's collection in this many env processes "
                             "(offline_data.collect_streams; 0 or 1 skips the row)")
    parser.add_argument("--breakout-skill", default="0,1",
                        help="the scripted Breakout player's skill range LOW,HIGH (the default "
                             "study collects with 0.7,1: longer episodes)")
    parser.add_argument("--breakout-episode-cap", type=int, default=1000,
                        help="steps per Breakout episode at most (the default study: 2000)")
    parser.add_argument("--skip-pipelined", action="store_true",
                        help="skip the row of one pipelined stream (collect_streams, streams=1)")
    parser.add_argument(
        "--quality-episodes",
        type=int,
        default=0,
        help="also measure Breakout's mean return per skill over this many episodes (slow)",
    )
    parser.add_argument(
        "--fetch-quality-episodes",
        type=int,
        default=20,
        help="episodes per skill for the Fetch success rate (with --quality-episodes)",
    )
    args = parser.parse_args(argv)
    if args.quality_episodes > 0:
        demonstrator_quality(
            args.quality_episodes, args.fetch_quality_episodes, args.size, args.skip_fetch
        )

    rng = np.random.default_rng(0)
    low, high = (float(v) for v in args.breakout_skill.split(","))
    breakout = bench(
        "Breakout",
        envs.BREAKOUT_ID,
        lambda: ScriptedBreakoutPolicy(skill=(low, high), seed=int(rng.integers(1 << 31))),
        args.breakout_steps,
        args.size,
        episode_cap=args.breakout_episode_cap,
        streams=args.streams,
        pipelined=not args.skip_pipelined,
        skill=(low, high),
    )
    if not args.skip_fetch:
        bench(
            "FetchPickAndPlace",
            envs.FETCH_PICK_AND_PLACE_ID,
            lambda: ScriptedFetchPickAndPlacePolicy(skill=(0.5, 1.0), seed=0),
            args.fetch_steps,
            args.size,
            episode_cap=50,
            buckets=500,  # RT-1 style arm: 500 buckets per action dimension
        )
    if breakout["collect"] is not None:
        ratio = breakout["collect"] / breakout["raw"]
        verdict = "ok" if ratio >= 0.5 else "BELOW TARGET"
        print(f"Breakout collect / raw env = {ratio:.2f} (target >= 0.50): {verdict}")
        return 0 if ratio >= 0.5 else 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Write a Minari dataset atomically: ``MinariWriter`` and ``create_minari_dataset``.

Example:
    with MinariWriter("embscale/demo/random-v0", env=env, description="random play") as w:
        w.add_episode(observations, actions, rewards, terminations, truncations, {"skill": 0.0})
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import secrets
import shutil
import warnings
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from offline_data.atomic import fsync_path, fsync_tree
from offline_data.datasets import (
    DATA_FORMAT,
    IPC_COMPRESSION,
    STAGING_DIR,
    Episode,
    check_dataset_id,
    check_image_space,
    datasets_root,
    load_dataset,
)
from offline_data.discretize import ActionDiscretizer, discretizer_for_space

logger = logging.getLogger(__name__)


@contextlib.contextmanager
def _minari_root(path: Path) -> Iterator[None]:
    # Minari resolves every dataset path from MINARI_DATASETS_PATH at call time; pointing it at a
    # hidden staging root makes minari build the whole dataset there, out of `minari list`'s sight.
    old = os.environ.get("MINARI_DATASETS_PATH")
    os.environ["MINARI_DATASETS_PATH"] = str(path)
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("MINARI_DATASETS_PATH", None)
        else:
            os.environ["MINARI_DATASETS_PATH"] = old


def _remove_stale_staging(root: Path) -> None:
    """Delete staging dirs left by processes that are gone (killed collections)."""
    staging = root / STAGING_DIR
    if not staging.is_dir():
        return
    for d in staging.iterdir():
        pid = d.name.split("-")[0]
        if pid.isdigit() and not _process_alive(int(pid)):
            shutil.rmtree(d, ignore_errors=True)


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)  # signal 0: existence check only
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    return True


class MinariWriter:
    """Writes a Minari dataset episode by episode; it appears under its id only on ``commit``.

    Everything is built in a hidden staging directory under the Minari root and moved into place
    with a rename, so an interrupted write (exception, Ctrl-C, kill) leaves no dataset that
    ``minari list local`` shows. Use as a context manager: commit on success, abort on error.

    Args:
        dataset_id: ``embscale/<env>/<source>-vN``.
        env: the gymnasium env the data came from (its spec is stored so Minari can recover it);
            ``None`` for imported data, then give ``observation_space`` and ``action_space``.
        observation_space: defaults to ``env.observation_space``; must be uint8 (H, W, 3).
        action_space: defaults to ``env.action_space``.
        discretizer: action discretizer; default: categorical for discrete spaces, and an error
            for continuous ones (pass ``discretizer_for_space(space, buckets)``).
        description: free text stored in the metadata.
        algorithm_name: what produced the actions (policy name, "human", importer).
        metadata: extra JSON-able dataset metadata.
        overwrite: replace an existing dataset with this id (on commit).
    """

    def __init__(self, dataset_id: str, env: Any = None, observation_space: Any = None,
                 action_space: Any = None, discretizer: ActionDiscretizer | None = None,
                 description: str = "", algorithm_name: str = "unknown",
                 metadata: Mapping[str, Any] | None = None, overwrite: bool = False):
        check_dataset_id(dataset_id)
        self.dataset_id = dataset_id
        self.root = datasets_root()
        self.final_path = self.root / dataset_id
        self.overwrite = overwrite
        self._refuse_existing()
        if observation_space is None:
            observation_space = getattr(env, "observation_space", None)
        if action_space is None:
            action_space = getattr(env, "action_space", None)
        if observation_space is None or action_space is None:
            raise ValueError("give an env, or both observation_space and action_space")
        check_image_space(observation_space, what=f"dataset {dataset_id!r}")
        if discretizer is None:
            discretizer = discretizer_for_space(action_space, buckets=None)
        self.discretizer = discretizer
        self.num_episodes = 0
        self.num_steps = 0
        _remove_stale_staging(self.root)
        self.staging = self.root / STAGING_DIR / f"{os.getpid()}-{secrets.token_hex(4)}"
        self.staging.mkdir(parents=True)
        env_arg = env if env is not None and _spec_is_json(env) else None
        meta = {"action_discretizer": discretizer.to_json(), "embscale_format": 1,
                "frame_shape": list(observation_space.shape),
                "env_id": getattr(getattr(env, "spec", None), "id", None) or "",
                **dict(metadata or {})}
        import minari

        self._closed = False
        self.frame_shape = tuple(observation_space.shape)
        self._pending: list = []
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="minari-writer")
        try:
            with _minari_root(self.staging), warnings.catch_warnings():
                warnings.simplefilter("ignore")  # minari warns about unset optional fields
                self.dataset = minari.create_dataset_from_buffers(
                    dataset_id, [], env=env_arg, eval_env=env_arg,
                    observation_space=observation_space, action_space=action_space,
                    algorithm_name=algorithm_name, author="embodied-scaling",
                    author_email=None, code_permalink=None,
                    description=description or f"{dataset_id} ({algorithm_name})",
                    data_format=DATA_FORMAT, jpeg_encoding=False)
            self.dataset.storage.update_metadata(_jsonable(meta))
        except BaseException:
            self.abort()
            raise

    def _refuse_existing(self) -> None:
        if self.final_path.exists() and not self.overwrite:
            raise FileExistsError(f"dataset {self.dataset_id!r} already exists at "
                                  f"{self.final_path}; pass --overwrite (overwrite=True) to "
                                  "replace it, or choose another id/version")

    def add_episode(self, observations: np.ndarray, actions: Any, rewards: Any, terminations: Any,
                    truncations: Any, metadata: Mapping[str, Any] | None = None) -> int:
        """Append one episode (T steps, T+1 observations); returns its episode id.

        The arrays are copied, then encoded and written on a background thread (pyarrow releases
        the GIL), so collection keeps stepping the env while the previous episode is written and
        the caller may reuse its buffers as soon as this returns.

        Raises:
            ValueError: the lengths disagree (T actions, rewards, terminations and truncations
                for T+1 observations) or the frames do not match the dataset's.
        """
        from minari.data_collector.episode_buffer import EpisodeBuffer

        observations = np.array(observations, copy=True)
        steps = len(observations) - 1
        actions = np.array(actions, copy=True)
        rewards = np.array(rewards, dtype=np.float64, copy=True).reshape(-1)
        terminations = np.array(terminations, dtype=bool, copy=True).reshape(-1)
        truncations = np.array(truncations, dtype=bool, copy=True).reshape(-1)
        lengths = {"actions": len(actions), "rewards": len(rewards),
                   "terminations": len(terminations), "truncations": len(truncations)}
        if steps < 1 or any(n != steps for n in lengths.values()):
            got = ", ".join(f"{n} {name}" for name, n in lengths.items())
            raise ValueError(f"episode {self.num_episodes} of {self.dataset_id!r} has "
                             f"{len(observations)} observations and {got}; an episode needs "
                             "T >= 1 actions, rewards, terminations and truncations for T+1 "
                             "observations")
        if observations.shape[1:] != tuple(self.frame_shape) or observations.dtype != np.uint8:
            raise ValueError(f"observations {observations.dtype} {observations.shape[1:]} do not "
                             f"match the dataset's uint8 frames {tuple(self.frame_shape)}; resize "
                             "them first")
        episode_id = self.num_episodes
        buffer = EpisodeBuffer(id=episode_id, observations=observations, actions=actions,
                               rewards=rewards, terminations=terminations,
                               truncations=truncations)
        meta = _jsonable({"return": float(rewards.sum()), **dict(metadata or {})})

        def write() -> None:
            _write_episode(self.dataset.storage, buffer, meta)

        self._wait(keep=1)  # bounded memory: at most one episode queued behind the writer
        self._pending.append(self._executor.submit(write))
        self.num_episodes += 1
        self.num_steps += steps
        return episode_id

    def _wait(self, keep: int = 0) -> None:
        while len(self._pending) > keep:
            self._pending.pop(0).result()  # re-raises a writer error here

    def commit(self):
        """Move the finished dataset into place and return it loaded from its final path."""
        try:
            self._wait()
        except BaseException:
            self.abort()
            raise
        self._executor.shutdown()
        if self.num_episodes:
            storage = self.dataset.storage
            storage.update_metadata({"total_steps": int(self.num_steps),
                                     "total_episodes": int(self.num_episodes),
                                     "dataset_size": float(storage.get_size())})
        if self.num_episodes == 0:
            self.abort()
            raise ValueError(f"no episodes were written to {self.dataset_id!r}; nothing saved")
        self._refuse_existing()
        built = self.staging / self.dataset_id
        with _minari_root(self.root), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from minari.dataset.minari_dataset import parse_dataset_id
            from minari.namespace import create_namespace, list_local_namespaces

            namespace = parse_dataset_id(self.dataset_id)[0]
            if namespace is not None and namespace not in list_local_namespaces():
                create_namespace(namespace)
        self.final_path.parent.mkdir(parents=True, exist_ok=True)
        fsync_tree(built)  # durable before it is published under its id
        if self.final_path.exists():
            trash = self.root / STAGING_DIR / f"{os.getpid()}-{secrets.token_hex(4)}-old"
            os.replace(self.final_path, trash)
            os.replace(built, self.final_path)
            shutil.rmtree(trash, ignore_errors=True)
        else:
            os.replace(built, self.final_path)
        fsync_path(self.final_path.parent)
        shutil.rmtree(self.staging, ignore_errors=True)
        self._closed = True
        logger.info("wrote %s: %d episodes, %d steps", self.dataset_id, self.num_episodes,
                    self.num_steps)
        return load_dataset(self.dataset_id)

    def abort(self) -> None:
        """Delete everything written so far."""
        for future in self._pending:
            future.cancel()
        self._executor.shutdown(wait=True)
        self._pending.clear()
        shutil.rmtree(self.staging, ignore_errors=True)
        self._closed = True

    def __enter__(self) -> MinariWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            self.abort()
        elif not self._closed:
            self.commit()


def create_minari_dataset(dataset_id: str, episodes: Sequence[Episode] | Iterator[Episode],
                          **writer_kwargs: Any):
    """Write ``episodes`` as a Minari dataset atomically; kwargs as for ``MinariWriter``."""
    with MinariWriter(dataset_id, **writer_kwargs) as writer:
        for ep in episodes:
            writer.add_episode(*ep)
        return writer.commit()


def _write_episode(storage: Any, episode: Any, meta: dict) -> None:
    """Write one episode in Minari's arrow layout (``data/<id>/part-0.arrow`` + metadata.json).

    Mirrors ``ArrowStorage.update_episodes`` (same columns, same encoding of spaces, the final
    observation padded with zero actions/rewards) but passes IPC compression, which minari's own
    call does not; dataset totals are written once at commit instead of per episode.
    """
    import pyarrow as pa
    import pyarrow.dataset as pads
    from minari.dataset._storages.arrow_storage import _encode_space

    observations = _encode_space(storage.observation_space, episode.observations,
                                 jpeg_encoding=False)
    steps = len(episode.rewards)
    pad = len(observations) - steps
    batch = pa.RecordBatch.from_pydict({
        "episode_id": np.full(len(observations), episode.id, dtype=np.int32),
        "observations": observations,
        "actions": _encode_space(storage.action_space, episode.actions, pad=pad,
                                 jpeg_encoding=False),
        "rewards": np.pad(episode.rewards, (0, pad)),
        "terminations": np.pad(episode.terminations, (0, pad)),
        "truncations": np.pad(episode.truncations, (0, pad)),
    })
    fmt = pads.IpcFileFormat()
    pads.write_dataset(batch, storage.data_path, format=fmt, partitioning=["episode_id"],
                       existing_data_behavior="overwrite_or_ignore",
                       file_options=fmt.make_write_options(compression=IPC_COMPRESSION))
    episode_meta = {"id": int(episode.id), "total_steps": int(steps), **meta}
    (storage.data_path / str(episode.id) / "metadata.json").write_text(json.dumps(episode_meta))


def _spec_is_json(env: Any) -> bool:
    spec = getattr(env, "spec", None)
    if spec is None:
        return False
    try:
        spec.to_json()
    except (ValueError, TypeError) as e:
        logger.warning("env spec of %s is not JSON-serialisable (%s): Minari will not be able to "
                       "recover the env; register it with a string entry point", spec.id, e)
        return False
    return True


def _jsonable(meta: Mapping[str, Any]) -> dict:
    return json.loads(json.dumps(dict(meta), default=_np_default))


def _np_default(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    raise TypeError(f"metadata value {obj!r} is not JSON-serialisable")

"""Saved stable-baselines3 models as collection policies, and what loading them trusts.

A stable-baselines3 ``.zip`` holds JSON whose non-JSON items (spaces, the policy class, schedules)
are cloudpickled, plus ``policy.pth``. ``ALGO.load`` unpickles them, so **loading a zip runs
whatever code its author put there**: load only zips you trust. Two ways in:

- ``sb3:ALGO:PATH`` (or ``sb3:PATH``, the algorithm read from the zip's JSON without unpickling
  anything) calls ``ALGO.load`` of that one algorithm: full fidelity, trusted files only;
- ``sb3-weights:ALGO:PATH`` never unpickles: it builds a fresh ``ALGO`` policy for the env's spaces
  (MLP, CNN or multi-input, told apart by the weights' names; ``policy_kwargs`` only when the zip
  stores them as plain JSON) and reads ``policy.pth`` with ``torch.load(weights_only=True)``.
  Safe for a zip from anyone; custom policy classes need the trusted path.
"""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path
from typing import Any

ALGORITHMS = ("PPO", "A2C", "DQN", "SAC", "TD3", "DDPG")
_OFF_POLICY = ("DQN", "SAC", "TD3", "DDPG")


def _zip_path(path: str) -> Path:
    for candidate in (Path(path), Path(path + ".zip")):
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(f"no stable-baselines3 model at {path!r}; give the .zip written by "
                            "model.save()")


def _read_zip(path: Path) -> tuple[dict, bytes | None]:
    """The zip's JSON ``data`` (nothing unpickled) and its ``policy.pth`` bytes."""
    try:
        with zipfile.ZipFile(path) as z:
            data = json.loads(z.read("data").decode()) if "data" in z.namelist() else {}
            weights = z.read("policy.pth") if "policy.pth" in z.namelist() else None
    except (zipfile.BadZipFile, ValueError, UnicodeDecodeError, KeyError) as e:
        raise ValueError(f"{path} is not a stable-baselines3 model zip ({e}); give the .zip "
                         "written by model.save()") from e
    return data, weights


def _sniff(data: dict) -> str:
    """The algorithm that saved a model, from the hyperparameters only it stores ("" if unsure).

    >>> _sniff({"clip_range": {}, "gae_lambda": 0.95})
    'PPO'
    """
    module = str((data.get("policy_class") or {}).get("__module__", "")).split(".")
    if len(module) > 2 and module[0] == "stable_baselines3" and module[1].upper() in ALGORITHMS:
        return module[1].upper()  # dqn.policies, sac.policies, td3.policies
    if "clip_range" in data:
        return "PPO"
    if "gae_lambda" in data:
        return "A2C"
    if "exploration_rate" in data:
        return "DQN"
    if "target_entropy" in data:
        return "SAC"
    if "policy_delay" in data:
        return "DDPG" if data.get("policy_delay") == 1 and not data.get("target_policy_noise") \
            else "TD3"
    return ""


def _algorithm(name: str, path: Path, data: dict) -> Any:
    import stable_baselines3 as sb3

    if not name:  # read the algorithm from the zip's plain-JSON fields, unpickling nothing
        name = _sniff(data)
        if name.upper() not in ALGORITHMS:
            raise ValueError(f"cannot tell which algorithm saved {path}; name it: "
                             f"sb3:ALGO:{path} with ALGO one of {', '.join(ALGORITHMS)}")
    if name.upper() not in ALGORITHMS:
        raise ValueError(f"unknown stable-baselines3 algorithm {name!r}; use one of "
                         f"{', '.join(ALGORITHMS)}, e.g. sb3:PPO:{path}")
    return getattr(sb3, name.upper())


def load_sb3(spec: str, env: Any, weights_only: bool = False) -> Any:
    """Load ``[ALGO:]PATH`` (the part after ``sb3:`` or ``sb3-weights:``) for ``env``.

    Args:
        spec: ``ALGO:PATH`` or ``PATH``.
        env: the env the policy will act in (its spaces build the weights-only policy).
        weights_only: build the policy and read only its weights (nothing unpickled).

    Raises:
        FileNotFoundError: no zip at the path.
        ValueError: not a model zip, an unknown algorithm, or weights that do not fit.
    """
    algo, _, path = spec.partition(":") if ":" in spec and not Path(spec).exists() else ("", "",
                                                                                          spec)
    zpath = _zip_path(path)
    data, weights = _read_zip(zpath)
    cls = _algorithm(algo, zpath, data)
    if not weights_only:
        try:
            return cls.load(str(zpath), env=None, device="cpu")
        except Exception as e:  # noqa: BLE001 - one line naming the file, cause kept
            raise ValueError(f"could not load {zpath} as {cls.__name__} ({type(e).__name__}: "
                             f"{e}); check the algorithm (sb3:ALGO:PATH) and the file") from e
    return _load_weights(cls, zpath, data, weights, env)


def _load_weights(cls: Any, path: Path, data: dict, weights: bytes | None, env: Any) -> Any:
    import torch

    if weights is None:
        raise ValueError(f"{path} holds no policy.pth; give the .zip written by model.save()")
    try:
        state = torch.load(io.BytesIO(weights), map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - refused or damaged: one line
        raise ValueError(f"{path}: policy.pth is not plain weights ({type(e).__name__}); the "
                         "weights-only path refuses it") from e
    kwargs = data.get("policy_kwargs") or {}
    if not isinstance(kwargs, dict) or ":serialized:" in json.dumps(kwargs):
        raise ValueError(f"{path} stores pickled policy_kwargs (e.g. an activation class); the "
                         "weights-only path cannot rebuild that policy: use sb3:ALGO:PATH if "
                         "you trust the file")
    keys = " ".join(state)
    policy = ("CnnPolicy" if "features_extractor.cnn" in keys or ".cnn." in keys
              else "MultiInputPolicy" if "extractors." in keys else "MlpPolicy")
    extra = {"buffer_size": 1} if cls.__name__ in _OFF_POLICY else {}
    model = cls(policy, env, policy_kwargs=kwargs, device="cpu", **extra)
    try:
        model.policy.load_state_dict(state)
    except RuntimeError as e:
        first = str(e).splitlines()[0]
        raise ValueError(f"{path}: its weights do not fit a {cls.__name__} {policy} for this "
                         f"env ({first}); check the env and algorithm") from e
    return model

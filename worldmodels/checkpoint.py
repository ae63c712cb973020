"""One way to load a trained model: ``load_model(path, expect=...)``.

A model checkpoint (the trainer's ``<run>/checkpoints/last.pt`` or a saved model) holds the
weights (``model``), the model's config (``model_config``) and its kind (``model_kind``). Each
package that defines a model kind registers how to build it from its config with
:func:`register_model_kind`: ``worldmodels.token_model`` registers ``token_model`` (WM-Token and
BC-Token), ``agents.bc_cnn`` registers ``bc_cnn``. This module imports neither, so ``worldmodels``
never imports ``agents`` (DESIGN.md's import table).

Example::

    from worldmodels.checkpoint import load_model
    world_model = load_model("runs/demo/wm-token-s100k-seed0", expect="world model")
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from worldmodels.run_state import load_torch_file

EXPECT = ("any", "world model", "policy")
"""Roles ``expect`` accepts besides a model kind's own name."""


@dataclass(frozen=True)
class ModelKind:
    """How to rebuild one kind of model from its checkpoint.

    Attributes:
        name: the ``model_kind`` recorded in checkpoints.
        build: ``build(model_config dict) -> nn.Module`` (an untrained model of that config).
        role: ``role(model_config dict) -> (description, "world model" | "policy")``.
    """

    name: str
    build: Callable[[dict[str, Any]], nn.Module]
    role: Callable[[dict[str, Any]], tuple[str, str]]


MODEL_KINDS: dict[str, ModelKind] = {}
"""Every registered model kind by name (filled by the packages that define them)."""


def register_model_kind(name: str, build: Callable[[dict[str, Any]], nn.Module],
                        role: Callable[[dict[str, Any]], tuple[str, str]]) -> None:
    """Make checkpoints of ``model_kind == name`` loadable (see :class:`ModelKind`)."""
    MODEL_KINDS[name] = ModelKind(name, build, role)


def checkpoint_file(path: str | os.PathLike) -> str:
    """``path`` itself, or ``path/checkpoints/last.pt`` for a run directory."""
    if os.path.isdir(path) and os.path.isfile(os.path.join(path, "checkpoints", "last.pt")):
        return os.path.join(path, "checkpoints", "last.pt")
    return os.fspath(path)


def _kind(name: str, path: str) -> ModelKind:
    if name not in MODEL_KINDS:
        raise ValueError(f"{path} holds a {name or 'unknown'!r} model, which no imported package "
                         f"registered (known: {sorted(MODEL_KINDS)}); import the package that "
                         "defines it (agents.bc_cnn for BC-CNN)")
    return MODEL_KINDS[name]


def read_model_checkpoint(path: str | os.PathLike, expect: str = "any",
                          map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a model checkpoint safely (``weights_only``) and check that it holds ``expect``.

    Args:
        path: checkpoint file, or a run directory (its ``checkpoints/last.pt``).
        expect: ``"world model"`` (a WM-Token model), ``"policy"`` (BC-Token or BC-CNN),
            ``"any"``, or a model kind (``"token_model"``, ``"bc_cnn"``).
        map_location: where tensors are loaded.

    Raises:
        FileNotFoundError: no file at ``path``.
        ValueError: the file is not a model checkpoint, or holds another kind of model.
    """
    if expect not in EXPECT and expect not in MODEL_KINDS:
        raise ValueError(f"expect={expect!r}; use one of {EXPECT} or a model kind "
                         f"{sorted(MODEL_KINDS)}")
    path = checkpoint_file(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"no checkpoint at {path}; train one with `embscale train`")
    ckpt = load_torch_file(path, "model checkpoint", map_location)
    if not isinstance(ckpt, dict) or "model" not in ckpt or "model_config" not in ckpt:
        raise ValueError(f"{path} is not a model checkpoint (no weights and model config); pass "
                         "a file written by `embscale train` (<run>/checkpoints/last.pt)")
    kind = ckpt.get("model_kind", "")
    if expect in MODEL_KINDS and kind != expect:
        raise ValueError(f"{path} holds a {kind or 'unknown'!r} model, not a {expect!r} model")
    if expect in ("world model", "policy"):
        name, role = (_kind(kind, path).role(ckpt["model_config"]) if kind in MODEL_KINDS
                      else (f"{kind or 'unknown'} model", ""))
        if expect == "world model" and role != "world model":
            raise ValueError(f"{path} holds a {name}, not a world model; pass a checkpoint "
                             "trained with `embscale train --task wm-token` (a policy goes to "
                             "`embscale eval policy`)")
        if expect == "policy" and role == "world model":
            raise ValueError(f"{path} holds a {name}, not a policy; pass a BC-Token or BC-CNN "
                             "checkpoint (a world model goes to `embscale dyna`/`play`/`dream`)")
    return ckpt


def model_from_checkpoint(ckpt: dict[str, Any], path: str = "the checkpoint") -> nn.Module:
    """The model a checkpoint read by :func:`read_model_checkpoint` holds, in eval mode."""
    model = _kind(ckpt.get("model_kind", ""), path).build(ckpt["model_config"])
    model.load_state_dict(ckpt["model"])
    return model.eval()


def load_model(path: str | os.PathLike, expect: str = "any",
               map_location: str | torch.device = "cpu") -> nn.Module:
    """Load the model of a checkpoint (or run directory), checking it holds ``expect``.

    See :func:`read_model_checkpoint` for ``expect`` and the errors.
    """
    ckpt = read_model_checkpoint(path, expect, map_location)
    return model_from_checkpoint(ckpt, checkpoint_file(path))

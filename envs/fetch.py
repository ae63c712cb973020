"""gymnasium-robotics FetchPickAndPlace with a rendered uint8 RGB image as the observation.

MuJoCo renders offscreen at (size, size) directly, so no resize is needed and the env is fully
described by its registered id and kwargs (Minari's ``recover_environment`` rebuilds it).

Rendering without a display needs ``MUJOCO_GL=egl`` or ``MUJOCO_GL=osmesa``; when it is unset the
env follows ``PYOPENGL_PLATFORM`` if that is set, else picks ``osmesa`` where the OSMesa library
is installed, else ``egl``. A MuJoCo renderer that is
freed after another env has rendered leaves that env's GL context released, after which MuJoCo
silently draws black frames: this env makes its own context current before every render, still
``close()`` envs explicitly, and every frame is checked: an all-black one raises ``RuntimeError``
instead of being recorded as data.

Needs the ``robotics`` extra: ``pip install "embodied-scaling[robotics]"``.

Example::

    import envs
    env = envs.make("embscale/FetchPickAndPlace-v0", size=128)
"""

from __future__ import annotations

import ctypes.util
import importlib.util
import logging
import os
from typing import Any

import gymnasium
import numpy as np
from gymnasium import spaces

from envs.images import check_frame_size

logger = logging.getLogger(__name__)

# A frontal view of the table that keeps the block, the gripper and targets up to 0.45 m above the
# table in frame (the library's default camera shows the whole robot and leaves the block ~2 px).
CAMERA_CONFIG = {
    "distance": 1.5,
    "azimuth": 180.0,
    "elevation": -22.0,
    "lookat": np.array([1.25, 0.75, 0.62]),
}


def ensure_mujoco_gl() -> str:
    """Pick a headless OpenGL backend for MuJoCo when ``MUJOCO_GL`` is unset and return it."""
    backend = os.environ.get("MUJOCO_GL")
    if not backend:
        # PyOpenGL's platform, once chosen, must match MuJoCo's backend.
        platform = os.environ.get("PYOPENGL_PLATFORM", "").lower()
        if platform in ("egl", "osmesa"):
            backend = platform
        else:
            backend = "osmesa" if ctypes.util.find_library("OSMesa") else "egl"
        os.environ["MUJOCO_GL"] = backend
        logger.info("MUJOCO_GL was unset; rendering MuJoCo offscreen with %r", backend)
    if backend == "osmesa":
        load_triton_before_osmesa()
    return backend


def load_triton_before_osmesa() -> None:
    """Import Triton now, if it is installed, before MuJoCo loads Mesa's OSMesa.

    Both carry LLVM. Loaded after OSMesa, Triton crashes the process (a segmentation fault), and
    torch imports Triton whenever it is installed (as CUDA builds of torch install it) the first
    time anything compiles: rendering a Fetch episode and then training a compiled model in one
    process would crash. Loaded first, the two live side by side.
    """
    if importlib.util.find_spec("triton") is not None:
        import triton  # noqa: F401


def _import_fetch_env() -> type:
    ensure_mujoco_gl()
    try:
        from gymnasium_robotics.envs.fetch.pick_and_place import MujocoFetchPickAndPlaceEnv
    except ImportError as e:
        raise ImportError(
            "embscale/FetchPickAndPlace-v0 needs gymnasium-robotics and mujoco 3.11: "
            'pip install "embodied-scaling[robotics]"'
        ) from e
    return MujocoFetchPickAndPlaceEnv


class FetchPickAndPlaceImageEnv(gymnasium.Env):
    """Fetch robot arm: pick the block up and place it at the (possibly mid-air) target.

    Spaces: observation ``Box(0, 255, (size, size, 3), uint8)``, the offscreen camera image;
    action ``Box(-1, 1, (4,), float32)``: gripper displacement dx, dy, dz (scaled by 0.05 m) and
    gripper opening (-1 closes, +1 opens).
    Reward: gymnasium-robotics' ``reward_type`` ("sparse": -1 per step until the block is within
    5 cm of the target, then 0; "dense": minus that distance in metres).
    Termination: never. Truncation: ``max_episode_steps`` (50) of the registered id.
    Info: ``state``, the Dict state observation of FetchPickAndPlace-v4 (``observation`` (25,),
    ``achieved_goal`` (3,), ``desired_goal`` (3,), float64); ``is_success``, 1.0 when the block is
    within 5 cm of the target, else 0.0.

    Args:
        size: side of the square image in pixels (64 by default, 128 as in the paper), or a
            (height, width) pair.
        reward_type: ``"sparse"`` or ``"dense"``.
        render_mode: ``None`` or ``"rgb_array"`` (``render()`` returns the observation image).
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 25}

    def __init__(self, size: int | tuple[int, int] = 64, reward_type: str = "sparse",
                 render_mode: str | None = None):
        size = check_frame_size(size)
        height, width = (size, size) if isinstance(size, int) else size
        if reward_type not in ("sparse", "dense"):
            raise ValueError(f"reward_type must be 'sparse' or 'dense', got {reward_type!r}")
        if render_mode not in (None, "rgb_array"):
            raise ValueError(f"render_mode must be None or 'rgb_array', got {render_mode!r}")
        env_cls = _import_fetch_env()
        self.size = size
        self.render_mode = render_mode
        self._sim = env_cls(
            reward_type=reward_type,
            render_mode="rgb_array",
            width=width,
            height=height,
            default_camera_config=CAMERA_CONFIG,
        )
        self.action_space = self._sim.action_space
        self.observation_space = spaces.Box(0, 255, (height, width, 3), np.uint8)
        self.state_space = self._sim.observation_space
        self._frame: np.ndarray | None = None

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        """Reset the arm, block and target; returns the first image and the state info."""
        super().reset(seed=seed)
        state, _ = self._sim.reset(seed=seed, options=options)
        frame = self._render()
        return frame, self._info(state)

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        """Move the gripper for one control step (10 ms x 20 MuJoCo substeps = 0.04 s)."""
        state, reward, terminated, truncated, _ = self._sim.step(action)
        return self._render(), float(reward), bool(terminated), bool(truncated), self._info(state)

    def render(self) -> np.ndarray | None:
        """The last observation image (``render_mode="rgb_array"``), else ``None``."""
        if self.render_mode == "rgb_array" and self._frame is not None:
            return self._frame.copy()
        return None

    def get_state(self) -> dict[str, np.ndarray]:
        """The current Dict state observation (what ``info["state"]`` last held)."""
        return self._sim._get_obs()

    def close(self) -> None:
        """Release the MuJoCo renderer (do this before making another rendering env)."""
        if getattr(self, "_sim", None) is not None:
            self._sim.close()
            self._sim = None

    def _render(self) -> np.ndarray:
        renderer = self._sim.mujoco_renderer
        if renderer.viewer is not None:
            # The viewer makes its GL context current only when it is created; another env's
            # renderer created or freed since then leaves it drawing nothing (black frames).
            renderer.viewer.make_context_current()
        # Copy: the renderer may hand out a view of a buffer it reuses on the next render.
        frame = np.array(renderer.render("rgb_array"), dtype=np.uint8, order="C", copy=True)
        if not frame.any():
            raise RuntimeError(
                "MuJoCo rendered an all-black frame. Set MUJOCO_GL=egl or MUJOCO_GL=osmesa before "
                "the first env is created, and close() rendering envs you no longer use"
            )
        self._frame = frame
        return frame

    def _info(self, state: dict[str, np.ndarray]) -> dict[str, Any]:
        success = self._sim._is_success(state["achieved_goal"], state["desired_goal"])
        return {"state": state, "is_success": float(success)}

"""Atari games with small square uint8 RGB observations, the resize built into the env class.

The resize lives inside the env (not in a gymnasium ``ResizeObservation`` wrapper) so that the env
is fully described by its registered id and kwargs: Minari's ``recover_environment`` rebuilds it
from the dataset's env spec alone.

Example::

    import envs
    env = envs.make("embscale/Breakout-v1", size=128)
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import numpy as np
from ale_py.env import AtariEnv
from gymnasium import spaces
from gymnasium.utils import EzPickle

from envs.images import (
    check_crop,
    check_dilate,
    check_frame_size,
    resize_frame,
    sprite_dilation,
)


class AtariImageEnv(AtariEnv):
    """An ALE game whose observations are the screen resized to (size, size, 3) uint8 RGB.

    Spaces: observation ``Box(0, 255, (size, size, 3), uint8)``; action ``Discrete(n)`` over the
    game's minimal action set (Breakout: NOOP, FIRE, RIGHT, LEFT).
    Reward: the game score gained during the ``frameskip`` emulator frames of a step.
    Termination: game over (all lives lost). Truncation: the registered ``max_episode_steps``
    (``TimeLimit``) or the ALE's own frame cap.
    Info: ``lives``, ``episode_frame_number``, ``frame_number`` as in ale-py, plus ``ram``: a copy
    of the 128-byte console RAM (uint8, shape (128,)) after the step, read by scripted players.

    Args:
        game: ALE ROM name in snake_case, e.g. ``"breakout"``.
        size: side of the square observation in pixels (64 by default, 128 as in the paper),
            or a (height, width) pair.
        frameskip: emulator frames per env step (each repeats the action).
        repeat_action_probability: sticky-action probability per emulator frame (0.25 as in
            ``ALE/*-v5``, Machado et al. 2018).
        render_mode: ``None`` or ``"rgb_array"`` (the full-resolution 210x160 screen).
        dilate: how small sprites survive the resize. ``"auto"`` (default) takes the maximum
            over a window of screen pixels as large as the downscale factor before the area
            resize ((3, 4) at 64x64), so that the Breakout ball (2x4 screen pixels) keeps full
            colour in at least one pixel instead of a dim half-pixel smear that a tokenizer
            drops; ``"none"`` is the plain area resize; a ``(width, height)`` pair sets the
            window in screen pixels. ``"auto"`` is computed on the cropped screen.
        crop: ``None`` (the whole 210x160 screen) or ``(top, bottom, left, right)`` screen
            pixels kept before the resize, e.g. ``envs.registration.BREAKOUT_PLAYFIELD`` (the
            playfield without the score band and the walls: 164x144 pixels, not 210x160).
        frame_max: observe the pixel-wise maximum of the last two emulator frames of each step
            (the standard Atari preprocessing against flicker, Mnih et al. 2015); a moving
            ball then shows at both of its last two positions.
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 30}

    def __init__(
        self,
        game: str = "breakout",
        size: int | tuple[int, int] = 64,
        frameskip: int = 4,
        repeat_action_probability: float = 0.25,
        render_mode: str | None = None,
        dilate: tuple[int, int] | str = "auto",
        crop: tuple[int, int, int, int] | None = None,
        frame_max: bool = False,
    ):
        size = check_frame_size(size)
        if not isinstance(frame_max, (bool, np.bool_)):
            raise TypeError(f"frame_max must be True or False, got {frame_max!r}")
        dilate = check_dilate(dilate)
        if isinstance(frameskip, bool) or not isinstance(frameskip, (int, np.integer)):
            raise TypeError(f"frameskip must be a positive int (e.g. 4), got {frameskip!r}")
        if frameskip < 1:
            raise ValueError(f"frameskip must be a positive int (e.g. 4), got {frameskip}")
        if not 0.0 <= float(repeat_action_probability) <= 1.0:
            raise ValueError(
                "repeat_action_probability must lie in [0, 1] (0.25 is the ALE v5 default), "
                f"got {repeat_action_probability}"
            )
        if render_mode not in (None, "rgb_array"):
            raise ValueError(f"render_mode must be None or 'rgb_array', got {render_mode!r}")
        super().__init__(
            game=game,
            obs_type="rgb",
            frameskip=int(frameskip),
            repeat_action_probability=float(repeat_action_probability),
            full_action_space=False,
            render_mode=render_mode,
        )
        # Re-initialise pickling with our own constructor arguments (AtariEnv stored its own).
        EzPickle.__init__(self, game, size, frameskip, repeat_action_probability, render_mode,
                          dilate, crop, frame_max)
        self.size = size
        self.frame_max = bool(frame_max)
        self._frame_sink: Callable[[np.ndarray], None] | None = None  # see defer_frames
        screen = self.ale.getScreenDims()  # (height, width), 210x160 for every ALE game
        self.crop = check_crop(None if crop is None else tuple(crop),
                               (int(screen[0]), int(screen[1])))
        if self.crop is not None:
            screen = (self.crop[1] - self.crop[0], self.crop[3] - self.crop[2])
        if dilate == "auto":
            dilate = sprite_dilation((int(screen[0]), int(screen[1])), size)
        self.dilate: tuple[int, int] = (1, 1) if dilate == "none" else dilate
        hw = (size, size) if isinstance(size, int) else size
        self.observation_space = spaces.Box(0, 255, (*hw, 3), np.uint8)

    def get_ram(self) -> np.ndarray:
        """Return a copy of the console RAM, uint8 array of shape (128,)."""
        return self.ale.getRAM()

    def step(self, action: int) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        """Repeat ``action`` for ``frameskip`` emulator frames (ale-py's step, see the class)."""
        if not self.frame_max or self.continuous:
            return super().step(action)
        if not self.action_space.contains(action):  # a bare index would wrap (-1) or fail
            raise ValueError(f"action {action!r} is outside the action space {self.action_space}; "
                             "pass an integer element of env.action_space (e.g. "
                             "env.action_space.sample())")
        action_id = self._action_set[int(action)]
        reward = 0.0
        for i in range(self._frameskip):
            if i == self._frameskip - 1:
                # The frame before the last one; _get_obs takes the maximum with the last.
                self._previous_screen = self.ale.getScreenRGB()
            reward += self.ale.act(action_id, 1.0)
        terminated = self.ale.game_over(with_truncation=False)
        truncated = self.ale.game_truncated()
        return self._get_obs(), reward, terminated, truncated, self._get_info()

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        """Reset the game (ale-py's reset); the first observation is a single frame."""
        self._previous_screen = None
        return super().reset(seed=seed, options=options)

    def frame_maker(self) -> Callable[[np.ndarray], np.ndarray]:
        """The observation as a function of :meth:`raw_frame`'s screen (picklable).

        ``env.frame_maker()(env.raw_frame())`` is the observation, bit for bit: the dilation and
        the area resize, the part of a step that is not emulation. A collector that hands the
        raw screens to another process (``offline_data.collect_streams``) applies it there.
        """
        return functools.partial(resize_frame, size=self.size, dilate=self.dilate)

    def raw_frame(self) -> np.ndarray:
        """The current screen before the resize: frame-maxed, cropped, contiguous uint8 RGB."""
        screen = self.ale.getScreenRGB()
        previous = getattr(self, "_previous_screen", None)
        if self.frame_max and previous is not None:
            screen = np.maximum(screen, previous)
            self._previous_screen = None
        if self.crop is not None:
            top, bottom, left, right = self.crop
            screen = np.ascontiguousarray(screen[top:bottom, left:right])
        return screen

    def defer_frames(self, sink: Callable[[np.ndarray], None] | None) -> None:
        """Hand every observation's :meth:`raw_frame` to ``sink`` instead of resizing it.

        While ``sink`` is set, reset and step return an all-zero observation of the right
        shape, so only a policy that does not read observations (a scripted player reading the
        RAM) may act on them; :meth:`frame_maker` turns each raw frame into the observation
        later. ``None`` restores the resized observations.
        """
        self._frame_sink = sink

    def _get_obs(self) -> np.ndarray:
        raw = self.raw_frame()
        if self._frame_sink is not None:
            self._frame_sink(raw)
            return np.zeros(self.observation_space.shape, np.uint8)
        return resize_frame(raw, self.size, self.dilate)

    def _get_info(self) -> dict[str, Any]:
        info = dict(super()._get_info())
        info["ram"] = self.ale.getRAM()
        return info

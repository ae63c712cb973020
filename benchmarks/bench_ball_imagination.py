"""Does a Breakout world model put the ball where it goes? Imagined vs real ball, per horizon.

Run: ``.venv/bin/python benchmarks/bench_ball_imagination.py --world-model CKPT --tokenizer TOK``
(``--tokens DIR`` for other shards than the model's training data, ``--device cuda`` on a GPU).

Starts each row from ``--burn-in`` real frames of a held-out episode (as tokens), then imagines
``--horizon`` frames with the episode's real actions, and compares the imagined frames with the
tokenizer's reconstruction of the real ones. The ball is found by colour: in the playfield
between the bricks and the paddle, pixels whose red channel exceeds green by more than 15. For
each horizon it prints how many real frames show the ball, the share of those where the
imagined frame has ball pixels within 3 pixels of the real ball, the share of imagined frames
with any ball, and the share of image tokens equal to the real ones. As a baseline, the same
score for the last burn-in frame's ball (copying the last position) is printed for horizon 1.

Then, teacher-forced at horizon 1 (the real burn-in and the real earlier tokens of the frame
given, one forward pass): the frame of each position's most likely token, and one sampled token
per position. If the argmax frames show few balls while sampled ones show many, the model
spreads the ball's probability over several places instead of following its velocity.
"""

from __future__ import annotations

import argparse

import numpy as np
import scipy.ndimage as nd
import torch

from worldmodels.simulator import SimulatorConfig, load_simulator

# Breakout at 64x64: rows between the bricks and the paddle, columns inside the walls.
PLAYFIELD = (slice(29, 57), slice(3, 61))


def ball_mask(frames: np.ndarray, threshold: int = 15) -> np.ndarray:
    """bool (B, H, W): ball-coloured pixels of uint8 (B, H, W, 3) frames inside the playfield."""
    f = frames.astype(np.int32)
    mask = np.zeros(f.shape[:3], bool)
    region = f[:, PLAYFIELD[0], PLAYFIELD[1]]
    mask[:, PLAYFIELD[0], PLAYFIELD[1]] = (region[..., 0] - region[..., 1]) > threshold
    return mask


def near(pred: np.ndarray, real: np.ndarray, pixels: int = 3) -> list[bool]:
    """Per frame that shows a real ball: does ``pred`` have ball pixels within ``pixels``?"""
    hits = []
    for i in np.flatnonzero(real.any((1, 2))):
        hits.append(bool((pred[i] & nd.binary_dilation(real[i], iterations=pixels)).any()))
    return hits


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--world-model", required=True, help="WM-Token checkpoint")
    p.add_argument("--tokenizer", required=True, help="the tokenizer its tokens came from")
    p.add_argument("--tokens", default=None, help="token shards (default: the training data)")
    p.add_argument("--split", default="test", help="held-out split to start from")
    p.add_argument("--rows", type=int, default=32, help="imagined rows")
    p.add_argument("--burn-in", type=int, default=2, help="real frames before imagining")
    p.add_argument("--horizon", type=int, default=4, help="imagined frames per row")
    p.add_argument("--temperature", type=float, default=1.0, help="0: greedy")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto", help="cpu, cuda or auto")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    args = p.parse_args(argv)
    if args.horizon < 1 or args.burn_in < 1:
        p.error("--horizon and --burn-in must be at least 1")
    if args.threads:
        torch.set_num_threads(args.threads)
    cfg = SimulatorConfig(burn_in=args.burn_in, temperature=args.temperature)
    sim = load_simulator(args.world_model, args.tokenizer, args.tokens, args.split, args.rows,
                         cfg, seed=args.seed, device=args.device)
    B, b, H = args.rows, args.burn_in, args.horizon
    rng = np.random.default_rng(args.seed)
    episodes = [e for e in sim.start_episodes if len(e.frame_tokens) >= b + H]
    if not episodes:
        raise SystemExit(f"no {args.split} episode has {b + H} frames; lower --horizon")
    z0, a0, future_z, future_a = [], [], [], []
    for _ in range(B):
        ep = episodes[rng.integers(len(episodes))]
        s = int(rng.integers(len(ep.frame_tokens) - b - H + 1))
        z0.append(ep.frame_tokens[s:s + b])
        a0.append(ep.action_tokens[s:s + b - 1])
        future_a.append(ep.action_tokens[s + b - 1:s + b - 1 + H])
        future_z.append(ep.frame_tokens[s + b:s + b + H])
    last = sim.start_from_tokens(np.arange(B), np.stack(z0), np.stack(a0))
    future_a, future_z = np.stack(future_a), np.stack(future_z)
    offsets = torch.as_tensor(sim.layout.action_offsets, device=sim.device)
    print(f"{args.world_model}: {B} rows, burn-in {b}, temperature {args.temperature}")
    print(f"{'horizon':>7} {'real balls':>10} {'within 3px':>10} {'any ball':>9} "
          f"{'tokens equal':>12}")
    for h in range(H):
        action = torch.as_tensor(future_a[:, h], device=sim.device) + offsets
        z, _, _ = sim.imagine_tokens(action)
        imagined = ball_mask(sim.decode_tokens(z))
        real = ball_mask(sim.decode_tokens(torch.as_tensor(future_z[:, h], device=sim.device)))
        hits = near(imagined, real)
        if h == 0:
            copy = near(ball_mask(last), real)
        equal = float((z.cpu().numpy() == future_z[:, h]).mean())
        print(f"{h + 1:>7} {len(hits):>10} {np.mean(hits) if hits else float('nan'):>10.2f} "
              f"{imagined.any((1, 2)).mean():>9.2f} {equal:>12.3f}")
    print(f"baseline, horizon 1: the last real frame's ball is within 3px in "
          f"{np.mean(copy) if copy else float('nan'):.2f} of frames")
    teacher_forced(sim, np.stack(z0), np.stack(a0), future_z[:, 0], future_a[:, 0], args.seed)
    return 0


@torch.no_grad()
def teacher_forced(sim, z0, a0, z1, a1, seed: int) -> None:
    """Ball placement of per-position argmax and sampled tokens, given every real token before."""
    lay, d = sim.layout, sim.layout.tokens_per_frame
    frames = np.concatenate([z0, z1[:, None]], 1)  # B, b + 1, d_z
    actions = np.concatenate([a0, a1[:, None]], 1)  # B, b, d_a: the last step's action
    actions = np.concatenate([actions, actions[:, -1:]], 1)  # (unused) after the last frame
    seq = torch.as_tensor(lay.to_global(frames, actions), device=sim.device)
    gpt = sim.model.gpt
    first = (frames.shape[1] - 1) * lay.tokens_per_step  # the last frame's first token
    logits = gpt.lm_head(gpt.hidden(seq[:, :first + d - 1]))[:, first - 1:, :lay.image_vocab]
    g = torch.Generator(device=sim.device).manual_seed(seed)
    sampled = torch.multinomial(torch.softmax(logits.float().reshape(-1, logits.shape[-1]), -1),
                                1, generator=g).reshape(logits.shape[:2])
    real = ball_mask(sim.decode_tokens(torch.as_tensor(z1, device=sim.device)))
    for name, z in (("argmax", logits.argmax(-1)), ("sampled", sampled)):
        mask = ball_mask(sim.decode_tokens(z))
        hits = near(mask, real)
        print(f"teacher-forced {name:>7}: ball within 3px {np.mean(hits):.2f} of {len(hits)} "
              f"real balls; frames with any ball {mask.any((1, 2)).mean():.2f}")


if __name__ == "__main__":
    raise SystemExit(main())

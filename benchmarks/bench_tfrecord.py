"""TFRecord reading: CRC-32C from a C library vs pure Python; protobuf vs the hand decoder.

Measured in one run, interleaved over ``--repeats`` rounds (the median is printed):

* **CRC-32C** of the records of an RT-1-sized shard: ``crc32c`` (the library the importer
  uses, ``google-crc32c`` when installed) against ``crc32c_python`` (the pure-Python table loop,
  the fallback and the baseline), in MB/s.
* **Parsing** one RT-1-layout ``tf.train.Example`` per episode (JPEG per step, world vector,
  gripper, 512-float language embedding per step, flags): the installed ``protobuf`` runtime
  (``offline_data.importers.example_proto``) against the hand-written wire-format decoder
  (``offline_data.importers.tfrecord.parse_example``, the baseline), in records/s and MB/s.

Example::

    python benchmarks/bench_tfrecord.py --episodes 20 --steps 40
"""

from __future__ import annotations

import argparse
import io
import statistics
import time

import numpy as np
from PIL import Image

from offline_data.importers import example_proto, tfrecord


def rt1_record(rng: np.random.Generator, steps: int, size: int) -> bytes:
    """One RT-1-layout episode as a serialized ``tf.train.Example``."""
    images = []
    for _ in range(steps):
        buf = io.BytesIO()
        img = rng.integers(0, 255, (size, size, 3), dtype=np.uint8)
        Image.fromarray(img).save(buf, format="JPEG", quality=90)
        images.append(buf.getvalue())
    feats = {
        "steps/observation/image": images,
        "steps/observation/natural_language_embedding": rng.standard_normal(
            steps * 512).astype(np.float32),
        "steps/action/world_vector": rng.uniform(-1, 1, steps * 3).astype(np.float32),
        "steps/action/gripper_closedness_action": rng.uniform(-1, 1, steps).astype(np.float32),
        "steps/action/rotation_delta": rng.uniform(-1, 1, steps * 3).astype(np.float32),
        "steps/reward": np.r_[np.zeros(steps - 1), 1.0].astype(np.float32),
        "steps/is_first": np.r_[1, np.zeros(steps - 1)].astype(np.int64),
        "steps/is_last": np.r_[np.zeros(steps - 1), 1].astype(np.int64),
        "steps/is_terminal": np.r_[np.zeros(steps - 1), 1].astype(np.int64),
        "episode_metadata/file_path": [b"gs://rt1/episode.tfrecord"],
    }
    return example_proto.encode_example(feats)


def timed(fn, records: list[bytes]) -> float:
    start = time.perf_counter()
    for r in records:
        fn(r)
    return time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--episodes", type=int, default=20, help="records (episodes) per round")
    ap.add_argument("--steps", type=int, default=40, help="steps per episode")
    ap.add_argument("--image-size", type=int, default=128, help="JPEG side in pixels")
    ap.add_argument("--repeats", type=int, default=5, help="interleaved rounds")
    args = ap.parse_args()

    rng = np.random.default_rng(0)
    records = [rt1_record(rng, args.steps, args.image_size) for _ in range(args.episodes)]
    mb = sum(len(r) for r in records) / 1e6
    # Both decoders must agree before their speeds mean anything.
    for r in records[:2]:
        a, b = tfrecord.parse_example(r), example_proto.parse_example(r)
        assert a.keys() == b.keys()
        for k in a:
            assert (a[k] == b[k]) if isinstance(a[k], list) else np.array_equal(a[k], b[k])
        assert tfrecord.crc32c(r) == tfrecord.crc32c_python(r)

    print(f"{len(records)} RT-1-layout records, {mb:.2f} MB; CRC library: "
          f"{tfrecord.crc32c_backend()}")
    t = {"crc_lib": [], "crc_py": [], "proto": [], "hand": []}
    for _ in range(args.repeats):
        t["crc_lib"].append(timed(tfrecord.crc32c, records))
        t["crc_py"].append(timed(tfrecord.crc32c_python, records))
        t["proto"].append(timed(example_proto.parse_example, records))
        t["hand"].append(timed(tfrecord.parse_example, records))
    med = {k: statistics.median(v) for k, v in t.items()}
    lib, py = mb / med["crc_lib"], mb / med["crc_py"]
    print(f"CRC-32C  {tfrecord.crc32c_backend():>14}: {lib:10.1f} MB/s")
    print(f"CRC-32C  {'pure Python':>14}: {py:10.1f} MB/s   (baseline; library is "
          f"{lib / py:.0f}x)")
    n = len(records)
    proto_rate, hand_rate = n / med["proto"], n / med["hand"]
    print(f"parse    {'protobuf (upb)':>14}: {proto_rate:10.1f} records/s  "
          f"{mb / med['proto']:8.1f} MB/s")
    print(f"parse    {'hand decoder':>14}: {hand_rate:10.1f} records/s  "
          f"{mb / med['hand']:8.1f} MB/s   (baseline; protobuf is {proto_rate / hand_rate:.1f}x)")
    print("target: CRC >= 200 MB/s with the library: " + ("met" if lib >= 200 else "NOT met"))


if __name__ == "__main__":
    main()

"""Render speed of the glyph world: `load_glyphs` (4x supersampled, jittered, into a datasets.Dataset) against an
anchor that draws the same characters directly at 32 px with Pillow into the same kind of Dataset. Rounds alternate
so both see the same machine load; the ratio is the number to read. The issue's bar: >= 3,000 distinct 32x32 images
in under 5 s (reported as CPU time, which contention on a shared machine does not inflate).

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_glyphs.py
"""

from __future__ import annotations

import statistics
import time

import datasets
from PIL import Image, ImageDraw, ImageFont

from diffusion_canon.data import CHARACTERS, load_glyphs
from diffusion_canon.data.glyphs import font_path

NUM_IMAGES, ROUNDS = 3000, 3


def anchor(num_images: int) -> datasets.Dataset:
    font = ImageFont.truetype(font_path("dejavu-sans", "regular"), 22)
    images = []
    for i in range(num_images):
        image = Image.new("RGB", (32, 32), "white")
        ImageDraw.Draw(image).text((16, 16), CHARACTERS[i % 36], font=font, fill="black", anchor="mm")
        images.append(image)
    return datasets.Dataset.from_dict({"image": images}, features=datasets.Features({"image": datasets.Image()}))


def timed(function, *args):
    wall, cpu = time.perf_counter(), time.process_time()
    result = function(*args)
    return result, time.perf_counter() - wall, time.process_time() - cpu


def main() -> None:
    load_glyphs(num_images=36)  # fonts and glyph masks loaded once, as in any real session
    ours_wall, ours_cpu, anchor_wall = [], [], []
    for round_ in range(ROUNDS):
        ds, wall, cpu = timed(load_glyphs, 32, round_, "train", None, None, None, None, NUM_IMAGES)
        ours_wall.append(wall)
        ours_cpu.append(cpu)
        anchor_wall.append(timed(anchor, NUM_IMAGES)[1])
    distinct = len({image.tobytes() for image in ds["image"]})
    ratio = statistics.median(o / a for o, a in zip(ours_wall, anchor_wall))
    print(f"load_glyphs: {NUM_IMAGES} images, {distinct} distinct; median CPU {statistics.median(ours_cpu):.2f} s "
          f"(bar: 5 s), wall {statistics.median(ours_wall):.2f} s")
    print(f"ratio load_glyphs / direct 32 px Pillow anchor (same run, alternating): {ratio:.2f}x")


if __name__ == "__main__":
    main()

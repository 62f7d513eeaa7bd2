#!/usr/bin/env python3
"""Generates the benchmark datasets deterministically.

  gen.py mixed DIR       1 GiB: 512 MiB random in 4 large files, 512 MiB of log-like text in 128 files
  gen.py small DIR       30,000 files of 1-8 KiB text in 300 directories
  gen.py block FILE      a 4 GiB image of random data
  gen.py change FILE OUT change 1 % of FILE in scattered 256 KiB extents; write their list to OUT
"""
import os
import random
import sys

MiB = 1024 * 1024
WORDS = ("GET POST PUT DELETE /api/v1/users /api/v1/orders /healthz /metrics "
         "200 201 204 301 404 500 ok error timeout retry upstream cache hit miss").split()


def random_file(path, size, seed):
    rng = random.Random(seed)
    with open(path, "wb") as f:
        left = size
        while left:
            n = min(left, 4 * MiB)
            f.write(rng.randbytes(n))
            left -= n


def text(size, rng):
    lines = []
    total = 0
    while total < size:
        line = "2026-11-%02d %02d:%02d:%02d %s %s %d ms user=%d req=%08x\n" % (
            rng.randint(1, 28), rng.randint(0, 23), rng.randint(0, 59), rng.randint(0, 59),
            rng.choice(WORDS), rng.choice(WORDS), rng.randint(1, 900),
            rng.randint(1, 5000), rng.getrandbits(32))
        lines.append(line)
        total += len(line)
    return "".join(lines).encode()[:size]


def mixed(root):
    os.makedirs(os.path.join(root, "large"), exist_ok=True)
    os.makedirs(os.path.join(root, "logs"), exist_ok=True)
    for i in range(4):
        random_file(os.path.join(root, "large", "blob-%d.bin" % i), 128 * MiB, i)
    rng = random.Random(99)
    chunk = text(4 * MiB, rng)
    for i in range(128):
        # Each file differs (a rotation of the text and its own lines) so that nothing dedups.
        own = text(64 * 1024, rng)
        body = (own + chunk[i * 30011 % len(chunk):] + chunk)[:4 * MiB]
        with open(os.path.join(root, "logs", "app-%03d.log" % i), "wb") as f:
            f.write(body)


def small(root):
    rng = random.Random(7)
    for d in range(300):
        sub = os.path.join(root, "d%03d" % d)
        os.makedirs(sub, exist_ok=True)
        for i in range(100):
            with open(os.path.join(sub, "f%03d.txt" % i), "wb") as f:
                f.write(text(rng.randint(1024, 8192), rng))


def block(path):
    random_file(path, 4096 * MiB, 4242)


def change(path, out):
    size = os.path.getsize(path)
    extent = 256 * 1024
    count = size // 100 // extent
    rng = random.Random(11)
    offsets = sorted(rng.randrange(0, size - extent) // 4096 * 4096 for _ in range(count))
    with open(path, "r+b") as f, open(out, "w") as listing:
        for off in offsets:
            f.seek(off)
            f.write(rng.randbytes(extent))
            listing.write("%d %d\n" % (off, extent))


if __name__ == "__main__":
    what = sys.argv[1]
    {"mixed": mixed, "small": small, "block": block}.get(what, lambda *_: None)(*sys.argv[2:3])
    if what == "change":
        change(sys.argv[2], sys.argv[3])

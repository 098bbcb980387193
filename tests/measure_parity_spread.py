"""Measure the spread behind the parity tolerances (tests/parity.py): run the parity tests under each of torch's CPU
kernel paths and thread counts with PARITY_SPREAD_LOG set, and print the largest spread of each test family in
float32 spacings of the largest reference value. Run from the repository root: ``python tests/measure_parity_spread.py``
(the tests run with their tolerance; a failing one is reported, its spread is still logged)."""

from __future__ import annotations

import collections
import json
import os
import subprocess
import sys
import tempfile

FILES = ["tests/test_losses_parity.py", "tests/test_scheduler_parity.py", "tests/test_adm_models.py", "tests/test_karras_parity.py",
         "tests/test_convert_consistency.py",
         "tests/test_karras_losses_parity.py",
         "tests/test_pipeline_adm.py", "tests/test_convert_adm.py"]
PATHS = [(cap, threads) for cap in ("default", "avx2", "avx512") for threads in ("1", "2")]


def main() -> None:
    worst: dict[str, dict[str, float]] = collections.defaultdict(dict)
    for cap, threads in PATHS:
        with tempfile.NamedTemporaryFile(suffix=".jsonl") as log:
            env = dict(os.environ, ATEN_CPU_CAPABILITY=cap, OMP_NUM_THREADS=threads, PARITY_SPREAD_LOG=log.name)
            run = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *FILES],
                                 env=env, capture_output=True, text=True)
            print(f"{cap:8s} {threads} thread(s): {run.stdout.strip().splitlines()[-1]}")
            for line in open(log.name):
                row = json.loads(line)
                family = row["test"].split("::")[1].split("[")[0]
                worst[family][f"{cap}/{threads}"] = max(worst[family].get(f"{cap}/{threads}", 0.0), row["ulps"])
    print(f"\n{'test':52s}" + "".join(f"{c}/{t:>2s}".rjust(12) for c, t in PATHS) + "   max")
    for family, by_path in sorted(worst.items()):
        values = [by_path.get(f"{c}/{t}", float("nan")) for c, t in PATHS]
        print(f"{family:52s}" + "".join(f"{v:12.3g}" for v in values) + f"{max(values):8.3g}")


if __name__ == "__main__":
    main()

#!/usr/bin/env bash
# Fingerprint of everything a refactor must leave bit-identical: the mapped landmarks of all shared
# benchmark cases (evaluate), the series matrices, and a short training run from the shipped weights
# and from scratch (weights file and loss log). Usage: benchmarks/fingerprint.sh OUT_DIR; compare two
# runs with `diff OUT_A/fingerprint.txt OUT_B/fingerprint.txt`.
set -euo pipefail
out=${1:?usage: benchmarks/fingerprint.sh OUT_DIR}
shared=${SHARED:-$(dirname "$0")/../../shared}
bench=$shared/data/bench-lung-lesion-3
anhir=$shared/data/anhir-lung-lesion-3
ha=${HISTOAFFINE:-histoaffine}
export OMP_NUM_THREADS=1
rm -rf "$out" && mkdir -p "$out"
$ha evaluate "$bench/pairs.csv" --out "$out/evaluate" > /dev/null 2>&1
imgs=("$anhir"/images/*)
$ha register-series "${imgs[0]}" "${imgs[@]:1}" --chain --out "$out/series" > /dev/null 2>&1
$ha train --pairs "$bench/pairs.csv" --steps 3 --accumulation 2 --validate-every 3 --init default --seed 5 \
  --threads 1 --out "$out/train-default" --quiet > /dev/null 2>&1
$ha train --ihc --steps 3 --accumulation 2 --validate-every 3 --init none --width 8 --seed 5 \
  --threads 1 --out "$out/train-ihc" --quiet > /dev/null 2>&1
python - "$out" <<'PY' > "$out/fingerprint.txt"
"""One line per artefact: a hash of its numbers only (timings and creation metadata left out)."""
import hashlib, json, sys
from pathlib import Path
import numpy as np
from safetensors.numpy import load_file
out = Path(sys.argv[1])
def digest(arrays):
    h = hashlib.sha256()
    for a in arrays:
        h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()[:16]
for f in sorted(out.glob("evaluate/*-*.csv")) + sorted(out.glob("train-*/log.csv")):
    text = f.read_text().splitlines()
    if f.name == "log.csv":  # the wall-clock column is the last one
        text = [line.rsplit(",", 1)[0] for line in text]
    print(digest([np.frombuffer("\n".join(text).encode(), np.uint8)]), f.relative_to(out))
for f in sorted(out.glob("series/*/transform.json")):
    print(digest([np.array(json.loads(f.read_text())["matrix"], float)]), f.relative_to(out))
for f in sorted(out.glob("train-*/*.safetensors")):
    tensors = load_file(f)
    print(digest([tensors[k] for k in sorted(tensors)]), f.relative_to(out))
PY
wc -l < "$out/fingerprint.txt"

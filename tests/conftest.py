"""Shared test fixtures: the conformance data folder and small helpers."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

# Idle OpenMP threads sleep instead of spinning. On this shared 2-core machine, spinning threads of
# small torch ops made CPU tests up to ~10x slower under load. Must be set before torch is imported.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

ROOT = Path(__file__).resolve().parents[1]
CONFORMANCE_DIR = Path(os.environ.get("REASONRL_CONFORMANCE_DIR", ROOT.parent / "shared" / "conformance"))


def conformance_path(*parts: str) -> Path:
    """Path inside the conformance folder; skips the test cleanly when it is absent (a user's fresh clone)."""
    path = CONFORMANCE_DIR.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"conformance data not found at {path} (set REASONRL_CONFORMANCE_DIR)")
    return path


def read_jsonl(path: Path) -> list[dict]:
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


@pytest.fixture
def conformance():
    return conformance_path

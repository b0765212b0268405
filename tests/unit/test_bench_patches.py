"""The measurement patches in `bench/tools/` still apply to the code they measure
(docs/performance.md tells a reader to `git apply` them)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.skipif(
    shutil.which("git") is None or not (ROOT / ".git").exists(), reason="needs a git checkout"
)
@pytest.mark.parametrize(
    "patch", sorted((ROOT / "bench" / "tools").glob("*.patch")), ids=lambda p: p.name
)
def test_patch_applies(patch: Path) -> None:
    done = subprocess.run(
        ["git", "apply", "--check", str(patch)], cwd=ROOT, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr

"""Optional: sample the service's workers with py-spy while a scenario runs.

py-spy is not a dependency: install it anywhere (`uv pip install py-spy` into a
throwaway venv) and pass its path with `--py-spy`. Each worker's samples are
written as collapsed stacks next to the results, and the functions that were on
the CPU most often (own time, by file and function) are summarised.
"""

from __future__ import annotations

import subprocess
from collections import Counter
from pathlib import Path

_ROOT = str(Path(__file__).resolve().parent.parent) + "/"


class Recorder:
    def __init__(self, py_spy: Path, pids: list[int], seconds: float, out_prefix: Path) -> None:
        self.outputs = [out_prefix.with_name(f"{out_prefix.name}-{pid}.txt") for pid in pids]
        self.procs = [
            subprocess.Popen(
                _command(py_spy, pid, seconds, out),
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            for pid, out in zip(pids, self.outputs, strict=True)
        ]

    def summary(self, top: int = 15) -> dict[str, object]:
        for proc in self.procs:
            proc.wait(60)
        own: Counter[str] = Counter()
        inclusive: Counter[str] = Counter()
        total = 0
        for path in self.outputs:
            if not path.exists():
                continue
            for line in path.read_text().splitlines():
                stack, _, count = line.rpartition(" ")
                n = int(count)
                frames = [_short(f) for f in stack.split(";")]
                total += n
                own[frames[-1]] += n
                for frame in set(frames):
                    inclusive[frame] += n

        def share(c: Counter[str]) -> list[tuple[str, float]]:
            return [(f, round(100 * n / total, 1)) for f, n in c.most_common(top)] if total else []

        return {
            "samples": total,
            "own_pct": share(own),
            "inclusive_pct": share(inclusive),
            "files": [str(p) for p in self.outputs],
        }


def _command(py_spy: Path, pid: int, seconds: float, out: Path) -> list[str]:
    return [
        str(py_spy),
        "record",
        "--pid",
        str(pid),
        "--duration",
        str(max(1, round(seconds))),
        "--rate",
        "200",
        "--nonblocking",
        "--format",
        "raw",
        "--output",
        str(out),
    ]


def _short(frame: str) -> str:
    """`func (path/to/file.py:12)` → `file.py:func`, dropping site-packages' prefix."""
    name, _, where = frame.partition(" (")
    path = where.rstrip(")").rsplit(":", 1)[0]
    if "site-packages/" in path:
        path = path.split("site-packages/", 1)[1]
    elif path.startswith(_ROOT):
        path = path[len(_ROOT) :]
    return f"{path}:{name}"

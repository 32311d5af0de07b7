"""The mount table, read for the lab's teardown: never delete through a live mount."""

from __future__ import annotations

from pathlib import Path


def mounts_under(path: Path) -> list[str]:
    """Mount points at or below path, deepest first, from this process's mount table."""
    prefix = str(Path(path).resolve())
    found = []
    with open("/proc/self/mountinfo") as fh:
        for line in fh:
            point = line.split()[4].replace("\\040", " ")
            if point == prefix or point.startswith(prefix + "/"):
                found.append(point)
    return sorted(found, key=len, reverse=True)

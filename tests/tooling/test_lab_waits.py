"""Every wait in the lab and its tests goes through ``lab.wait.wait_until`` (or its async
twin), so $PGHA_TIMEOUT_FACTOR stretches them all: no loop of its own that compares the
clock against a deadline, outside lab/wait.py."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
WAIT_MODULE = ROOT / "lab" / "wait.py"
CLOCKS = {"monotonic", "time", "perf_counter"}

# Loops that read the clock but wait for nothing, each with the reason.
NOT_WAITS = {
    "lab/observation/workload.py:_watch": "a watchdog, not a wait: it cuts the socket of a statement "
    "stuck longer than STUCK_AFTER, the client's own timeout in the experiment, for as long as it runs",
}


def _is_clock(node: ast.AST) -> bool:
    """``time.monotonic()``, ``time.time()``, ``time.perf_counter()``, or a bare ``monotonic()``."""
    if not isinstance(node, ast.Call):
        return False
    func = node.func
    if isinstance(func, ast.Attribute):
        return func.attr in CLOCKS and isinstance(func.value, ast.Name) and func.value.id == "time"
    return isinstance(func, ast.Name) and func.id == "monotonic"


def _compares_the_clock(loop: ast.While | ast.For) -> bool:
    for node in ast.walk(loop):
        if isinstance(node, ast.Compare):
            operands = [node.left, *node.comparators]
            if any(_is_clock(inner) for operand in operands for inner in ast.walk(operand)):
                return True
    return False


def deadline_loops(source: str, filename: str = "<source>") -> list[str]:
    """``file:function`` of each ``while`` or ``for`` loop whose test or body compares the clock."""
    found = []

    def visit(node: ast.AST, function: str) -> None:
        for child in ast.iter_child_nodes(node):
            name = child.name if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef) else function
            if isinstance(child, ast.While | ast.For) and _compares_the_clock(child):
                found.append(f"{filename}:{function}")
            visit(child, name)

    visit(ast.parse(source, filename), "<module>")
    return sorted(set(found))


def test_no_hand_rolled_deadline_loop_in_the_lab_or_the_tests() -> None:
    found = []
    for root in (ROOT / "lab", ROOT / "tests"):
        for path in sorted(root.rglob("*.py")):
            if path == WAIT_MODULE:
                continue
            found += deadline_loops(path.read_text(), str(path.relative_to(ROOT)))
    assert [f for f in found if f not in NOT_WAITS] == []


def test_each_exemption_still_exists() -> None:
    """An exemption whose loop is gone would excuse the next one written there."""
    for key in NOT_WAITS:
        path, _ = key.split(":")
        assert key in deadline_loops((ROOT / path).read_text(), path), key


# ---- the detector catches what it must ------------------------------------------------------

LOOPS = {
    "while_test": """
def wait(ready):
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if ready():
            return
        time.sleep(0.5)
""",
    "while_true_body": """
async def wait(ready):
    deadline = time.time() + 30
    while True:
        if await ready():
            return
        if time.time() > deadline:
            raise TimeoutError
""",
    "elapsed": """
class Server:
    def wait(self, ready, timeout):
        start = monotonic()
        while monotonic() - start < timeout:
            ready()
""",
}


def test_each_shape_of_deadline_loop_is_found() -> None:
    for name, source in LOOPS.items():
        assert deadline_loops(source, name) == [f"{name}:wait"], name


def test_a_loop_that_only_measures_is_not_a_wait() -> None:
    source = """
def sample(worker, start):
    samples = []
    while worker.is_alive():
        samples.append(time.monotonic() - start)
    return samples
"""
    assert deadline_loops(source) == []

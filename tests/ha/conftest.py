"""The fault tests run on the lab fixture of tests/lab (down, up once, down at the end)."""

from tests.lab.conftest import lab  # noqa: F401

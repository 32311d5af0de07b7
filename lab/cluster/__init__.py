"""The lab with its verbs (``Lab``), and the operator's commands on a running cluster."""

from . import operator
from .operator import postmaster_pid, switchover
from .verbs import Lab, Timings

__all__ = ["Lab", "Timings", "operator", "postmaster_pid", "switchover"]

"""The lab with its verbs (``Lab``), and the operator's commands on a running cluster."""

from . import offsite, operator
from .operator import postmaster_pid, switchover
from .verbs import Lab, Timings

__all__ = ["Lab", "Timings", "offsite", "operator", "postmaster_pid", "switchover"]

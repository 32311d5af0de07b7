"""Machines and network: images, systemd-nspawn machines, the namespace, SSH, and ``LabAccess``."""

from . import external, image, offsite
from .access import STATE_ROOT, IdentityMissing, LabAccess
from .image import ImageBuildError, ensure_image
from .inside import inside
from .lock import Holder, LabBusy, StackLock
from .machine import Machine, MachineError, MachineSpec
from .netns import LabNetwork
from .ssh import SshRunner, StepError, StepResult, Target

__all__ = [
    "STATE_ROOT",
    "Holder",
    "IdentityMissing",
    "ImageBuildError",
    "LabAccess",
    "LabBusy",
    "LabNetwork",
    "Machine",
    "MachineError",
    "MachineSpec",
    "SshRunner",
    "StackLock",
    "StepError",
    "StepResult",
    "Target",
    "ensure_image",
    "external",
    "image",
    "inside",
    "offsite",
]

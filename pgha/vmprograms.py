"""Python programs that run on the VMs: the one convention all of them follow.

A program that runs on a VM and is written in Python (today
``pgha/haproxy/save_state.py``, ``pgha/backup/backup_status.py``,
``pgha/rolling/pgha_rolling.py``, ``pgha/patroni/hostaware.py``,
``pgha/host_maintenance/pgha_host_maintenance.py`` and ``pgha/fastpath/agent.py``) is:

- **a plain module of this package**, ``pgha/<service>/<tool>.py``: ruff checks
  and formats it like any other file, it is type-hinted, and its tests import
  it like any module. Importing it does nothing; ``main(argv)`` runs it, and
  the file ends with ``if __name__ == "__main__": sys.exit(main())``.
- **installed on the VM as that very file**, byte for byte (first line
  ``#!/usr/bin/python3``, mode 0755), at the module's ``INSTALL_PATH``:
  ``/usr/local/lib/pgha/<tool>`` for what services and steps call,
  ``/usr/local/sbin/<tool>`` for a command operators run. On the VM it stands
  alone, so it imports only the standard library and what Debian 13 installs
  with the service it serves (python3-yaml comes with Patroni), never ``pgha``.
- **configured by a JSON data file** at the module's ``SETTINGS_PATH``,
  ``/etc/pgha/<tool>.json``, that the same step installs, built by the
  service's renderer from the spec. Nothing is ever rendered into the
  program's text (no Jinja): a changed setting changes the data file only.

The service's renderer calls :func:`program_files` with the module and its
settings; the module itself is the one place that says where it lives.

One program is shipped differently: the step installer, ``pgha/install_files.py``
(``pgha-install-files``), is written by cloud-init, so its text is part of every
VM's user-data; it has no settings, and its path is ``files.INSTALLER_PATH``.
``tests/core/test_vm_programs.py`` holds every rendered stack to this.
"""

from __future__ import annotations

import json
from pathlib import Path
from types import ModuleType
from typing import Any

from .files import RenderedFile

SHEBANG = "#!/usr/bin/python3\n"
SETTINGS_DIR = "/etc/pgha"


def settings_path(tool: str) -> str:
    """Where a program's settings live on the VM: ``/etc/pgha/<tool>.json``."""
    return f"{SETTINGS_DIR}/{tool}.json"


def source(module: ModuleType) -> str:
    """The module's own text: what reaches the VM."""
    assert module.__file__ is not None
    return Path(module.__file__).read_text()


def settings_file(path: str, settings: dict[str, Any], mode: int = 0o644) -> RenderedFile:
    """A JSON data file, stable across renders (sorted keys) so a re-run changes nothing."""
    return RenderedFile(path, json.dumps(settings, indent=1, sort_keys=True) + "\n", mode=mode)


def program_files(
    module: ModuleType, settings: dict[str, Any], settings_mode: int = 0o644
) -> list[RenderedFile]:
    """The program, installed as its module's file, and its settings next to it."""
    return [
        RenderedFile(module.INSTALL_PATH, source(module), mode=0o755),
        settings_file(module.SETTINGS_PATH, settings, settings_mode),
    ]

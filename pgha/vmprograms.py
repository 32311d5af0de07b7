"""Python programs that run on the VMs: the one convention all of them follow.

A program that runs on a VM and is written in Python (today
``pgha/haproxy/save_state.py``, ``pgha/backup/backup_status.py``,
``pgha/rolling/pgha_rolling.py``, ``pgha/patroni/hostaware.py``,
``pgha/host_maintenance/pgha_host_maintenance.py``, ``pgha/fastpath/agent.py``,
``pgha/leader_race/agent.py`` and ``pgha/patroni/cluster_passwords.py``) is:

- **a plain module of this package**, ``pgha/<service>/<tool>.py``: ruff checks
  and formats it like any other file, it is type-hinted, and its tests import
  it like any module. Importing it does nothing; ``main(argv)`` runs it, and
  the file ends with ``if __name__ == "__main__": sys.exit(main())``.
- **installed on the VM as that very file**, byte for byte (first line
  ``#!/usr/bin/python3``, mode 0755), at the module's ``INSTALL_PATH``:
  ``/usr/local/lib/pgha/<tool>`` for what services and steps call,
  ``/usr/local/sbin/<tool>`` for a command operators run. On the VM it stands
  alone, so it imports only the standard library, what Debian 13 installs
  with the service it serves (python3-yaml comes with Patroni) and the shared
  library below, never any other part of ``pgha``.
- **sharing code only through the library** ``pgha/vmlib/`` (a standard-library
  module per concern: ``cluster_health.py``, the health rule every program and
  the lab apply; ``patroni_api.py``, the REST client; ``etcd_markers.py``, the signed markers
  in etcd that root's agents act on; ``scram.py``, PostgreSQL's password verifiers). A program imports it as
  ``from pgha.vmlib import cluster_health`` after
  ``sys.path.append(LIBRARY_ROOT)``: in the repository and its tests that finds
  this package (already first on the path); on the VM it finds the library's
  files, installed byte for byte (mode 0644) at
  ``/usr/local/lib/pgha/pgha/vmlib/<module>.py`` (``LIBRARY_ROOT`` is
  ``/usr/local/lib/pgha``; ``pgha`` and ``pgha.vmlib`` are namespace packages
  there, no ``__init__.py`` is shipped). :func:`program_files` adds the library
  modules a program imports (read from its source) to the program's own files,
  so the step that installs a program installs its library too, and a changed
  library changes that step's digest: the step runs again. A library module
  imports only the standard library (and, inside a function, what the
  program may: python3-yaml), never another part of pgha.
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

import ast
import functools
import importlib
import json
import sys
import threading
from pathlib import Path
from types import ModuleType
from typing import Any

from .files import RenderedFile

SHEBANG = "#!/usr/bin/python3\n"
SETTINGS_DIR = "/etc/pgha"
# Where the shared library lives on a VM: its modules keep their package path below it.
LIBRARY_ROOT = "/usr/local/lib/pgha"
LIBRARY_PACKAGE = "pgha.vmlib"


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


# CPython 3.11's ast module keeps one recursion counter for all threads, so two
# parses at once can fail with "SystemError: AST constructor recursion depth
# mismatch" (python/cpython gh-106905); under Pulumi, steps render from more than
# one thread. Parse each program once, one parse at a time.
_PARSE_LOCK = threading.Lock()


def library_modules(module: ModuleType) -> list[ModuleType]:
    """The modules of the shared library a program imports, as its source says (sorted by name)."""
    with _PARSE_LOCK:
        names = _library_names(module.__name__)
    return [importlib.import_module(f"{LIBRARY_PACKAGE}.{name}") for name in names]


@functools.cache
def _library_names(module_name: str) -> tuple[str, ...]:
    names = set()
    for node in ast.walk(ast.parse(source(sys.modules[module_name]))):
        if isinstance(node, ast.ImportFrom) and node.module == LIBRARY_PACKAGE:
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith(LIBRARY_PACKAGE + "."):
            names.add(node.module.removeprefix(LIBRARY_PACKAGE + "."))
        elif isinstance(node, ast.Import):
            prefix = LIBRARY_PACKAGE + "."
            names |= {a.name.removeprefix(prefix) for a in node.names if a.name.startswith(prefix)}
    return tuple(sorted(names))


def library_path(library: ModuleType) -> str:
    """Where a library module is installed on a VM: its package path below LIBRARY_ROOT."""
    return f"{LIBRARY_ROOT}/{library.__name__.replace('.', '/')}.py"


def library_files(module: ModuleType) -> list[RenderedFile]:
    """The library modules the program imports, each installed as its own file."""
    return [RenderedFile(library_path(m), source(m), mode=0o644) for m in library_modules(module)]


def secret_key_file(path: str, key: str) -> RenderedFile:
    """A key only root on the VM reads (mode 0600), e.g. one that signs etcd markers."""
    return RenderedFile(path, key + "\n", mode=0o600, secret=True)


def program_files(
    module: ModuleType, settings: dict[str, Any], settings_mode: int = 0o644
) -> list[RenderedFile]:
    """The program, installed as its module's file, its settings next to it, and the library it imports."""
    return [
        RenderedFile(module.INSTALL_PATH, source(module), mode=0o755),
        settings_file(module.SETTINGS_PATH, settings, settings_mode),
        *library_files(module),
    ]

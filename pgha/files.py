"""Rendered files and remote steps: the two things the core hands out.

A step is a bash script (never holding a secret, since a command line is
visible in ``ps``) plus a bundle of files sent on its standard input; the
script's first act is to install that bundle with ``pgha-install-files``,
which writes only what differs and prints what it changed, so services are
reloaded only when their files really changed.
"""

from __future__ import annotations

import hashlib
import json
import shlex
from dataclasses import dataclass
from pathlib import Path

from jinja2 import Environment, FileSystemLoader, StrictUndefined

CORE_DIR = Path(__file__).resolve().parent
REPO_DIR = CORE_DIR.parent
INSTALLER_PATH = "/usr/local/sbin/pgha-install-files"
# The installer is a Python program on the VM like the others (pgha/vmprograms.py),
# with one difference: cloud-init writes it, so its text is part of every VM's
# user-data, and on Proxmox a changed user-data snippet replaces the VM. Its
# path is decided here, not in its text, and its text changes only on purpose.
INSTALLER_SOURCE = CORE_DIR / "install_files.py"


@dataclass(frozen=True)
class RenderedFile:
    path: str
    content: str
    mode: int = 0o644
    owner: str = "root"
    group: str = "root"
    secret: bool = False

    def to_bundle(self) -> dict[str, str]:
        return {
            "path": self.path,
            "content": self.content,
            "mode": f"{self.mode:04o}",
            "owner": self.owner,
            "group": self.group,
        }


@dataclass(frozen=True)
class Step:
    """One remote step of one VM, run in plan order across the cluster (pgha.plan.ORDER)."""

    node: str
    name: str
    script: str
    files: tuple[RenderedFile, ...] = ()

    @property
    def command(self) -> str:
        """What Pulumi's remote.Command and the lab run, verbatim, as the SSH user."""
        return "sudo -n /bin/bash -c " + shlex.quote(self.script)

    @property
    def stdin(self) -> str:
        """The files this step installs, as JSON; may hold secrets, so only ever piped."""
        if not self.files:
            return ""
        return json.dumps({"files": [f.to_bundle() for f in self.files]}, sort_keys=True)

    @property
    def has_secrets(self) -> bool:
        return any(f.secret for f in self.files)

    @property
    def digest(self) -> str:
        """Changes whenever the script or any file it writes changes: Pulumi's trigger."""
        return hashlib.sha256((self.command + "\0" + self.stdin).encode()).hexdigest()


def shquote(value: object) -> str:
    """The one way a value reaches bash: a single word, quoted when it needs it.

    Strings and integers only: anything else (None, a bool, a list) in a step
    is a bug in the renderer, not something to print as Python would.
    """
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise TypeError(f"shquote: {value!r} is neither a string nor an integer")
    return shlex.quote(str(value))


def template_env(directory: Path) -> Environment:
    """Jinja for text configs: strict, so a missing value is an error, not a blank."""
    env = Environment(
        loader=FileSystemLoader([str(directory), str(CORE_DIR / "system")]),
        undefined=StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
        autoescape=False,
        # bash's ${#array[@]} would open a Jinja comment.
        comment_start_string="<#",
        comment_end_string="#>",
    )
    env.filters["shquote"] = shquote
    return env


def render_template(directory: Path, name: str, **context: object) -> str:
    return template_env(directory).get_template(name).render(**context)


def render_script(directory: Path, name: str, step_name: str, **context: object) -> str:
    """A step script: the shared library, then the service's own body."""
    env = template_env(directory)
    library = env.get_template("lib.sh.j2").render(step_name=step_name, installer=INSTALLER_PATH)
    body = env.get_template(name).render(**context)
    return "#!/bin/bash\n" + library + body

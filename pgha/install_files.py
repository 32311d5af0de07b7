#!/usr/bin/python3
"""Install the files of one pgha step from a JSON bundle on standard input.

Each file is written only if its content, mode or owner differ, through a
private temporary file renamed into place, so a secret is never readable by
others even for an instant and a reader never sees half a file. Prints the
paths it changed, one per line: steps reload a service only when it printed
something, which is what makes a second run change nothing.
"""

import grp
import json
import os
import pwd
import sys
import tempfile


def _differs(path: str, content: bytes, mode: int, uid: int, gid: int) -> bool:
    try:
        info = os.stat(path)
        with open(path, "rb") as handle:
            current = handle.read()
    except FileNotFoundError:
        return True
    return current != content or (info.st_mode & 0o7777) != mode or (info.st_uid, info.st_gid) != (uid, gid)


def _install(entry: dict) -> bool:
    path = entry["path"]
    content = entry["content"].encode()
    mode = int(entry["mode"], 8)
    uid = pwd.getpwnam(entry["owner"]).pw_uid
    gid = grp.getgrnam(entry["group"]).gr_gid
    if not _differs(path, content, mode, uid, gid):
        return False
    directory = os.path.dirname(path)
    os.makedirs(directory, mode=0o755, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".pgha-")
    try:
        os.fchown(fd, uid, gid)
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as handle:
            handle.write(content)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return True


def main() -> int:
    raw = sys.stdin.read()
    if not raw.strip():
        return 0
    for entry in json.loads(raw)["files"]:
        if _install(entry):
            print(entry["path"])
    return 0


if __name__ == "__main__":
    sys.exit(main())

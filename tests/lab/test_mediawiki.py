"""MediaWiki (Debian's package) on the live dev lab, through the VIP, across a switchover.

The recipe of docs/mediawiki.md on an application server of its own: the CLI
installer through VIP:5432 with libpq verifying the cluster's certificate,
edits saved, a planned switchover, more edits, then every saved text read back.
A page never saved must read as missing, so the read-back can fail; with a CA
that did not sign the cluster's certificate MediaWiki cannot connect at all,
so the TLS settings are in force; and PHP's libpq gives up on a server that
accepts and never answers (as HAProxy can, for a connection made during a
switchover) after the service file's connect_timeout, where without it it waits.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from lab.cluster import Lab, switchover
from lab.observation import observe
from lab.scenarios import mediawiki
from lab.scenarios.apps import primary_sql, spec_with
from lab.wait import wait_until
from pgha.spec import Node

pytestmark = pytest.mark.lab

DATABASE = {"name": "wiki", "owner": "wiki"}
# A switchover leaves VIP:5432 without a primary for a few seconds (HAProxy's check):
# what a wiki user sees as one failed save, retried here. An attempt whose connection
# HAProxy holds fails after the service file's connect_timeout (10 s).
SAVE_TIMEOUT = 60.0
SILENT_PORT = 5999


@pytest.fixture(scope="module")
def wiki_server(lab: Lab) -> Iterator[Node]:
    """The dev lab with database ``wiki`` (test_applications leaves it declared) and the app server."""
    if "wiki" not in {d.name for d in lab.spec.databases}:
        declared = [{"name": d.name, "owner": d.owner} for d in lab.spec.databases if d.state == "present"]
        lab.apply(spec_with(lab, databases=[*declared, DATABASE]))
    started = time.monotonic()
    node = mediawiki.boot(lab)
    print(f"application server up: {time.monotonic() - started:.1f} s")
    try:
        yield node
    finally:
        mediawiki.remove(lab)


def save(lab: Lab, node: Node, title: str, text: str) -> int:
    """Save ``text`` as ``title``, retrying while the VIP has no primary; the attempts it took."""
    attempts = []

    def saved() -> bool:
        attempts.append(1)
        return mediawiki.edit(lab, node, title, text).returncode == 0

    wait_until(saved, SAVE_TIMEOUT, interval=2.0, error=f"{title}: not saved")
    return len(attempts)


def test_mediawiki_keeps_every_edit_across_a_switchover(lab: Lab, wiki_server: Node) -> None:
    node = wiki_server
    # A fresh install: whatever an earlier run left in the database goes first.
    primary_sql(lab, "drop schema if exists mediawiki cascade", dbname="wiki")
    started = time.monotonic()
    installed = mediawiki.install(lab, node, "wiki", "wiki")
    assert installed.returncode == 0, installed.stdout + installed.stderr
    print(f"install: {time.monotonic() - started:.1f} s")
    # The installer connected as wiki, over TLS, to the primary (through the VIP).
    tables = primary_sql(lab, "select count(*) from pg_tables where tableowner = 'wiki'", dbname="wiki")
    assert int(tables) > 50

    saved: dict[str, str] = {}
    for n in range(3):
        saved[f"Before switchover {n}"] = f"Saved on the first primary, edit {n}."
    started = time.monotonic()
    for title, text in saved.items():
        save(lab, node, title, text)
    print(f"3 saves: {time.monotonic() - started:.1f} s")
    old = observe.leader(lab)
    started = time.monotonic()
    new = switchover(lab)
    assert new != old
    print(f"switchover {old} -> {new}: {time.monotonic() - started:.1f} s")
    after = {f"After switchover {n}": f"Saved on {new}, edit {n}." for n in range(3)}
    after["Before switchover 0"] = "Rewritten on the new primary."
    started = time.monotonic()
    attempts = [save(lab, node, title, text) for title, text in after.items()]
    print(f"4 saves after it: {time.monotonic() - started:.1f} s, attempts {attempts}")
    saved.update(after)

    started = time.monotonic()
    for title, text in saved.items():
        result = mediawiki.read(lab, node, title)
        assert result.returncode == 0, f"{title}: {result.stdout}{result.stderr}"
        assert result.stdout.strip() == text, title
    print(f"{len(saved)} pages read back: {time.monotonic() - started:.1f} s")
    never = mediawiki.read(lab, node, "Never saved")
    assert never.returncode != 0 and "Never saved" not in never.stdout


def test_mediawiki_refuses_a_server_its_ca_did_not_sign(lab: Lab, wiki_server: Node) -> None:
    """LocalSettings.php's putenv is what MediaWiki's libpq uses: another CA, no connection."""
    node = wiki_server
    genuine = lab.ca_path.read_text()
    other = lab.exec(
        node, ["cat", "/etc/ssl/certs/ISRG_Root_X1.pem"], capture_output=True, text=True, check=True
    )
    mediawiki.write_file(lab, node, mediawiki.CA_PATH, other.stdout, mode="0644")
    try:
        refused = mediawiki.read(lab, node, "After switchover 0")
    finally:
        mediawiki.write_file(lab, node, mediawiki.CA_PATH, genuine, mode="0644")
    assert refused.returncode != 0
    assert "certificate verify failed" in refused.stdout + refused.stderr
    assert mediawiki.read(lab, node, "After switchover 0").returncode == 0


def test_php_libpq_gives_up_on_a_silent_server_after_connect_timeout(lab: Lab, wiki_server: Node) -> None:
    """The service file's connect_timeout reaches PHP's libpq; without it, the connection waits."""
    node = wiki_server
    listener = (
        f"<?php $s = stream_socket_server('tcp://127.0.0.1:{SILENT_PORT}');\n"
        "while (true) { $held[] = stream_socket_accept($s, 60); }\n"
    )
    mediawiki.write_file(lab, node, "/run/pgha-silent.php", listener, mode="0644")
    mediawiki.write_file(lab, node, mediawiki.SERVICE_FILE, mediawiki.SERVICE_CONF, mode="0644")
    lab.exec(
        node,
        ["sh", "-c", "nohup timeout 90 php /run/pgha-silent.php >/dev/null 2>&1 &"],
        check=True,
        timeout=30,
    )
    probe = [
        "php",
        "-r",
        f"$t = microtime(true); $c = @pg_connect('host=127.0.0.1 port={SILENT_PORT} dbname=wiki user=wiki');"
        " echo ($c ? 'connected' : 'failed'), ' ', round(microtime(true) - $t, 1);",
    ]
    time.sleep(1)
    bounded = mediawiki.run(lab, node, probe, env=mediawiki.LIBPQ_ENV, timeout=40)
    print(f"with the service file: {bounded.stdout.strip()}")
    outcome, seconds = bounded.stdout.split()
    assert outcome == "failed" and 8 <= float(seconds) <= 15, bounded.stdout + bounded.stderr
    # Negative control: the same connection without the service file is still waiting at 20 s.
    unbounded = mediawiki.run(lab, node, probe, timeout=20)
    assert unbounded.returncode == 124, unbounded.stdout + unbounded.stderr  # timeout(1) ended it

"""``postgres.version`` beyond the image: the PGDG repository named, its key, and what is refused.

Debian 13 ships PostgreSQL 17 only; another major comes from the PGDG
repository (``postgres.repository``: URL, suite, ASCII-armored key), which the
system step writes as a deb822 source with the key inline on the VMs that
install the server. Every other combination is refused by key before
anything runs, also through the renderer (exit 2, one line, no traceback).
"""

from __future__ import annotations

from typing import Any

import pytest

from pgha import ConfigError, load_spec, node_files, node_steps
from pgha.pki import ClusterTls
from pgha.system import APT_SOURCE_PATH
from tests.core.test_config_hardening import render_bad

URL = "https://apt.postgresql.org/pub/repos/apt"
KEY = (
    "-----BEGIN PGP PUBLIC KEY BLOCK-----\n\n"
    "mQINBE6XR8IBEACVdDKT2HEH1IyHzXkb4nIWAY7echjRxo7MTcj4vbXAyBKOfjja\n"
    "=i/Nd\n-----END PGP PUBLIC KEY BLOCK-----\n"
)


def problems(config: dict[str, Any]) -> list[str]:
    with pytest.raises(ConfigError) as error:
        load_spec(config, "dev")
    return error.value.problems


def with_version(config: dict[str, Any], version: int, **repository: Any) -> dict[str, Any]:
    config["postgres"] = {"version": version, **({"repository": repository} if repository else {})}
    return config


def test_the_image_s_major_needs_no_repository(dev_config):
    spec = load_spec(with_version(dev_config, 17), "dev")
    assert spec.postgres.repository is None


def test_a_major_from_pgdg_with_its_repository_and_key(dev_config):
    spec = load_spec(with_version(dev_config, 18, url=URL, key=KEY), "dev")
    assert spec.postgres.repository is not None
    assert spec.postgres.repository.suite == "trixie-pgdg"
    assert spec.postgres.bin_dir == "/usr/lib/postgresql/18/bin"


@pytest.mark.parametrize(
    ("version", "repository", "key", "words"),
    [
        (18, {}, "postgres.version", ["PostgreSQL 18 is not in the debian-13 image", "postgres.repository"]),
        (12, {}, "postgres.version", ["PostgreSQL 12 is not in the debian-13 image (it provides 17)"]),
        (12, {"url": URL, "key": KEY}, "postgres.version", ["neither", "PGDG", "14, 15, 16, 17, 18"]),
        (18, {"url": URL}, "postgres.repository.key", ["is required"]),
        (18, {"url": URL, "key": "not a key"}, "postgres.repository.key", ["ASCII-armored"]),
        (18, {"url": URL, "key": KEY + "$(reboot)\n"}, "postgres.repository.key", ["ASCII-armored"]),
        (18, {"url": "http://x", "key": KEY}, "postgres.repository.url", ["https URL"]),
        (18, {"url": URL + "\nX: y", "key": KEY}, "postgres.repository.url", []),
        (18, {"url": URL, "key": KEY, "suite": "trixie pgdg"}, "postgres.repository.suite", []),
        (18, {"url": URL, "key": KEY, "pin": 1}, "postgres.repository.pin", ["unknown key"]),
    ],
)
def test_unknown_combinations_are_refused_by_key(dev_config, version, repository, key, words):
    found = problems(with_version(dev_config, version, **repository))
    assert found and all(p.startswith(f"pgha:{key}:") for p in found), found
    assert all(w in found[0] for w in words), found


def test_render_refuses_with_one_line_and_exit_2(tmp_path):
    result = render_bad(tmp_path, {"postgres": {"version": 18}})
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().count("\n") == 0, result.stderr
    assert result.stderr.startswith("error: pgha:postgres.version: PostgreSQL 18")


def test_the_repository_reaches_the_server_vms_as_a_signed_source(dev_config, secrets):
    spec = load_spec(with_version(dev_config, 18, url=URL, key=KEY), "dev")
    tls = ClusterTls.placeholders(spec)
    for node in spec.nodes:
        source = [f for f in node_files(spec, node, secrets, tls) if f.path == APT_SOURCE_PATH]
        assert len(source) == 1, node.name
        text = source[0].content
        assert f"URIs: {URL}\n" in text and "Suites: trixie-pgdg\n" in text
        # deb822: the key inline, every line indented, an empty one as " .".
        assert "Signed-By:\n -----BEGIN PGP PUBLIC KEY BLOCK-----\n .\n mQINBE6" in text
        system = next(s for s in node_steps(spec, node, secrets, tls) if s.name == "system")
        assert "apt-get -q update" in system.script
    server = [n for n in spec.nodes if n.role in ("postgres", "repository")]
    assert server == list(spec.nodes)


def test_without_a_repository_the_step_removes_the_source(spec, secrets):
    tls = ClusterTls.placeholders(spec)
    node = spec.nodes[0]
    assert not [f for f in node_files(spec, node, secrets, tls) if f.path == APT_SOURCE_PATH]
    system = next(s for s in node_steps(spec, node, secrets, tls) if s.name == "system")
    assert f"rm -f {APT_SOURCE_PATH}" in system.script

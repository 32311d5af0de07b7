"""lab/machines/image.py: every image but the base one starts from the base image, built once."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lab.machines import image


def test_a_stack_image_is_built_on_the_base_image(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(image, "IMAGES_DIR", tmp_path)
    monkeypatch.setattr(image, "host_mirror", lambda: "http://mirror.invalid/debian")
    built: list[tuple[list[str], Path | None]] = []

    def fake_build(rec: dict[str, object], tmp: Path, log: object, base: Path | None = None) -> None:
        built.append((list(rec["packages"]), base))  # type: ignore[call-overload]
        (tmp / "root" / "usr").mkdir(parents=True)
        (tmp / "recipe.json").write_text(json.dumps(rec))

    monkeypatch.setattr(image, "build", fake_build)
    base_root = tmp_path / image.recipe_hash(image.recipe(())) / "root"

    first = image.ensure_image(("etcd-server",), log=lambda _: None)
    second = image.ensure_image(("etcd-server", "nftables"), log=lambda _: None)
    assert image.ensure_image((), log=lambda _: None) == base_root  # cached, not rebuilt
    assert [base for _, base in built] == [None, base_root, base_root]  # debootstrap once
    assert built[0][0] == sorted(image.BASE_PACKAGES)
    assert "etcd-server" in built[1][0] and "nftables" in built[2][0]
    assert len({first, second, base_root}) == 3


def test_the_old_release_has_a_base_image_of_its_own(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The moving-in scenario's Debian 12 server: its own debootstrap, without trixie-only packages."""
    monkeypatch.setattr(image, "IMAGES_DIR", tmp_path)
    monkeypatch.setattr(image, "host_mirror", lambda: "http://mirror.invalid/debian")
    built: list[tuple[str, list[str], Path | None]] = []

    def fake_build(rec: dict[str, object], tmp: Path, log: object, base: Path | None = None) -> None:
        built.append((str(rec["suite"]), list(rec["packages"]), base))  # type: ignore[call-overload]
        (tmp / "root" / "usr").mkdir(parents=True)
        (tmp / "recipe.json").write_text(json.dumps(rec))

    monkeypatch.setattr(image, "build", fake_build)
    image.ensure_image(("postgresql-15",), log=lambda _: None, suite=image.OLD_SUITE)
    assert [(suite, base is None) for suite, _, base in built] == [("bookworm", True), ("bookworm", False)]
    assert "linux-sysctl-defaults" not in built[0][1] and "postgresql-15" in built[1][1]
    # The trixie images keep their cache keys: the recipe of a default suite is unchanged.
    assert image.recipe(())["suite"] == "trixie"
    assert "linux-sysctl-defaults" in image.recipe(())["packages"]  # type: ignore[operator]

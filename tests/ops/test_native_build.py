"""Where native builds are cached: DEPLOYKIT_CACHE, else the XDG cache folder, else ~/.cache."""

import pytest

from deploykit.errors import EnvironmentProblem
from deploykit.ops.native_build import cache_dir


def test_the_cache_folder_follows_deploykit_cache_then_xdg_then_home(monkeypatch, tmp_path):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("DEPLOYKIT_CACHE", raising=False)
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    assert cache_dir() == tmp_path / "home" / ".cache" / "deploykit"
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/cache")  # not absolute: ignored, as XDG says
    assert cache_dir() == tmp_path / "home" / ".cache" / "deploykit"
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_dir() == tmp_path / "xdg" / "deploykit"
    monkeypatch.setenv("DEPLOYKIT_CACHE", str(tmp_path / "mine"))
    assert cache_dir() == tmp_path / "mine"
    monkeypatch.setenv("DEPLOYKIT_CACHE", " ")
    with pytest.raises(EnvironmentProblem, match="DEPLOYKIT_CACHE is set but empty"):
        cache_dir()

import pytest
import torch

import genai_lab as gl
from genai_lab import config


def test_setup_smoke_profile_and_pick():
    cfg = gl.setup("smoke", verbose=False)
    assert cfg.profile == "smoke" and cfg.is_smoke
    assert cfg.pick(smoke=1, cpu=2, gpu=3) == 1
    assert config.LabConfig("gpu", "cpu").pick(smoke=1, cpu=2) == 2  # gpu falls back to cpu
    assert gl.current() is cfg


def test_setup_seeds_everything():
    gl.setup("smoke", seed=123, verbose=False)
    a = torch.rand(3)
    gl.setup("smoke", seed=123, verbose=False)
    assert torch.equal(a, torch.rand(3))


def test_default_profile_rules(monkeypatch):
    monkeypatch.delenv("GENAI_LAB_PROFILE", raising=False)
    monkeypatch.setenv("CI", "true")
    assert config.default_profile() == "smoke"
    monkeypatch.delenv("CI")
    assert config.default_profile() == ("gpu" if torch.cuda.is_available() else "cpu")
    monkeypatch.setenv("GENAI_LAB_PROFILE", "laptop")
    with pytest.raises(ValueError, match="GENAI_LAB_PROFILE"):
        config.default_profile()


@pytest.mark.parametrize("kwargs, match", [({"profile": "huge"}, "profile"), ({"threads": 0}, "threads"),
                                           ({"seed": "1"}, "seed")])
def test_setup_rejects_bad_input(kwargs, match):
    with pytest.raises((ValueError, TypeError), match=match):
        gl.setup(verbose=False, **kwargs)


def test_device_override(monkeypatch):
    monkeypatch.setenv("GENAI_LAB_DEVICE", "cpu")
    assert config.pick_device().type == "cpu"


def test_cache_dir_env(monkeypatch, tmp_path):
    monkeypatch.setenv("GENAI_LAB_DATA", str(tmp_path / "c"))
    assert config.cache_dir() == tmp_path / "c" and (tmp_path / "c").is_dir()

"""Settings round-trip, migrate from version 1, and survive a corrupt file."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from qtapp.core.app.paths import app_paths
from qtapp.core.app.settings import MAX_RECENT, SETTINGS_VERSION, Settings


def test_defaults_when_absent() -> None:
    s = Settings.load()
    assert (s.threads, s.default_ctx, s.kv_type, s.gpu_margin_mib) == (0, 4096, "f16", 1024)
    assert Path(s.output_dir) == app_paths().models / "quants"
    assert s.theme == "system" and s.first_run_done is False and s.eval_text is None


def test_round_trip() -> None:
    s = Settings(threads=6, default_ctx=8192, kv_type="q8_0", theme="dark", first_run_done=True)
    s.extra_model_dirs.append("/models")
    for i in range(MAX_RECENT + 3):
        s.add_recent(f"/m/{i}.gguf")
    s.add_recent("/m/5.gguf")  # moves to the top, no duplicate
    path = s.save()
    assert json.loads(path.read_text())["version"] == SETTINGS_VERSION
    back = Settings.load()
    assert back == s
    assert back.recent_models[0] == "/m/5.gguf" and len(back.recent_models) == MAX_RECENT
    assert back.recent_models.count("/m/5.gguf") == 1


def test_migrates_v1() -> None:
    path = app_paths().settings_file
    path.write_text(
        json.dumps(
            {
                "version": 1,
                "n_threads": 4,
                "ctx": 2048,
                "kv_cache_type": "Q8_0",
                "margin_mb": 512,
                "model_dirs": ["/data/models"],
                "dark_mode": True,
                "recent": ["/a.gguf"],
                "some_old_key": 1,
            }
        )
    )
    s = Settings.load()
    assert (s.threads, s.default_ctx, s.kv_type, s.gpu_margin_mib) == (4, 2048, "q8_0", 512)
    assert s.extra_model_dirs == ["/data/models"] and s.recent_models == ["/a.gguf"]
    assert s.theme == "dark" and s.version == SETTINGS_VERSION


def test_corrupt_file_kept_as_bak(caplog: pytest.LogCaptureFixture) -> None:
    path = app_paths().settings_file
    path.write_text('{"threads": 4, "theme": ')
    with caplog.at_level(logging.WARNING, logger="qtapp.core.app.settings"):
        s = Settings.load()
    assert s == Settings()
    assert path.with_name("settings.json.bak").read_text() == '{"threads": 4, "theme": '
    assert not path.exists()
    assert "starting from the defaults" in caplog.text


def test_bad_values_fall_back() -> None:
    app_paths().settings_file.write_text(
        json.dumps(
            {
                "version": 2,
                "threads": -3,
                "theme": "purple",
                "default_ctx": "big",
                "recent_models": "x",
                "first_run_done": True,
            }
        )
    )
    s = Settings.load()
    assert (s.threads, s.theme, s.default_ctx, s.recent_models) == (0, "system", 4096, [])
    assert s.first_run_done is True


def test_out_of_range_or_unknown_values_fall_back_to_defaults() -> None:
    from qtapp.core.app.settings import Settings

    loaded = Settings.from_dict(
        {"threads": 10**12, "default_ctx": 0, "gpu_margin_mib": -5, "kv_type": "evil"}
    )
    defaults = Settings()
    assert loaded.threads == defaults.threads
    assert loaded.default_ctx == defaults.default_ctx
    assert loaded.gpu_margin_mib == defaults.gpu_margin_mib
    assert loaded.kv_type == defaults.kv_type
    assert Settings.from_dict({"kv_type": "q8_0", "threads": 8}).kv_type == "q8_0"

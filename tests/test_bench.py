import json
import subprocess
import sys

import pytest

from genai_lab import bench


def test_metric_passed_respects_direction():
    assert bench.Metric("acc", 0.98, True, bar=0.97).passed is True
    assert bench.Metric("loss", 2.1, False, bar=2.0).passed is False
    assert bench.Metric("speed", 5.0).passed is None
    with pytest.raises(ValueError, match="name"):
        bench.Metric("", 1.0)


def test_discover_finds_the_intro_entry():
    assert "intro" in bench.discover()


def test_run_chapter_rows_and_storage(cfg, monkeypatch, tmp_path):
    monkeypatch.setenv("GENAI_LAB_DATA", str(tmp_path))
    rows = bench.run_chapter("intro", cfg)
    assert {r["metric"] for r in rows} >= {"python_loop_gflops", "cpu_matmul_gflops"}
    row = rows[0]
    assert set(row) >= {"chapter", "metric", "value", "higher_is_better", "bar", "passed", "seconds",
                        "profile", "device"}
    # torch's BLAS beats three nested Python loops by far more than 10x on any machine
    by = {r["metric"]: r["value"] for r in rows}
    assert by["cpu_matmul_gflops"] > 10 * by["python_loop_gflops"]
    assert bench.load_results("smoke") == rows
    with pytest.raises(ValueError, match="chapter"):
        bench.run_chapter("nope", cfg)


def test_cli_bench_json(tmp_path):
    env = {"GENAI_LAB_DATA": str(tmp_path), "GENAI_LAB_PROFILE": "smoke", "PATH": "/usr/bin:/bin",
           "HF_HUB_OFFLINE": "1"}
    out = subprocess.run([sys.executable, "-m", "genai_lab", "bench", "--chapter", "intro", "--json"],
                         capture_output=True, text=True, env=env, check=True).stdout
    rows = json.loads(out)
    assert rows and all(r["chapter"] == "intro" and r["profile"] == "smoke" for r in rows)
    bad = subprocess.run([sys.executable, "-m", "genai_lab", "bench", "--chapter", "nope"],
                         capture_output=True, text=True, env=env)
    assert bad.returncode == 2 and "nope" in bad.stderr

import json
import subprocess
import sys

from genai_lab import cli


def test_info_json_lists_sources():
    info = cli.info_dict()
    assert info["profile"] in ("smoke", "cpu", "gpu")
    assert set(info["datasets"]) >= {"digits", "fashion_mnist", "tiny_shakespeare"}
    assert set(info["models"]) >= {"minilm", "smollm2", "bert-base-uncased", "gpt2", "clip", "stable-diffusion"}
    assert "shared mirror" in info["datasets"]["tiny_shakespeare"]["tinyshakespeare/input.txt"] or \
        "cache" in info["datasets"]["tiny_shakespeare"]["tinyshakespeare/input.txt"]
    out = subprocess.run([sys.executable, "-m", "genai_lab", "info", "--json"], capture_output=True, text=True,
                         check=True).stdout
    assert json.loads(out)["versions"]["torch"].startswith("2.")


def test_labs_student_command(tmp_path):
    assert cli.main(["labs", "student", str(tmp_path)]) == 0
    assert any(tmp_path.glob("*_lab.ipynb"))
    assert cli.main(["labs", "student", str(tmp_path), "missing.ipynb"]) == 2


def test_ctrl_c_ends_with_one_line_and_code_130(monkeypatch, capsys):
    from genai_lab import cli

    def interrupted(args):
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "cmd_info", interrupted)
    assert cli.main(["info"]) == 130
    assert capsys.readouterr().err.strip() == "interrupted"

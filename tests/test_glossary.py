"""The one glossary: genai_lab/glossary.yml validates, and every Key terms box and the glossary page
are exactly what it renders."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from genai_lab import glossary as gl
from genai_lab.cli import main

ROOT = Path(__file__).resolve().parents[1]


def _notebooks() -> list[Path]:
    return sorted(ROOT.glob("book/*.ipynb")) + sorted(ROOT.glob("labs/*.ipynb"))


def _markdown_cells(path: Path) -> list[str]:
    nb = json.loads(path.read_text(encoding="utf-8"))
    return ["".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "markdown"]


def _page_rows() -> list[tuple[str, str]]:
    rows = []
    for line in (ROOT / gl.PAGE_FILE).read_text(encoding="utf-8").splitlines():
        if line.startswith("| ") and not line.startswith(("| English", "| ---")):
            cells = [c.strip() for c in line.strip().strip("|").split(" | ")]
            rows.append((cells[0], cells[1]))
    return rows


# --- the source ------------------------------------------------------------------------------


def test_source_validates_and_every_box_has_terms():
    glossary = gl.load()
    assert len(glossary.terms) >= 100
    for notebook in glossary.notebooks:
        assert glossary.terms_for(notebook), notebook
    assert "results" in glossary.no_box


def test_every_notebook_is_listed_and_every_listed_notebook_exists():
    glossary = gl.load()
    stems = {p.stem for p in _notebooks()}
    assert stems == set(glossary.notebooks) | set(glossary.no_box)
    assert all(gl.notebook_path(n).startswith("labs/") == n.endswith("_lab") for n in glossary.notebooks)


def test_every_lab_has_a_key_terms_box():
    labs = [n for n in gl.load().notebooks if n.endswith("_lab")]
    assert labs == sorted(p.stem for p in ROOT.glob("labs/*_lab.ipynb"))


# --- the book is in sync ---------------------------------------------------------------------


def test_notebooks_and_page_are_in_sync():
    assert gl.sync(write=False) == [], "run `python -m genai_lab glossary --write`"


def test_glossary_page_is_what_the_source_renders():
    glossary = gl.load()
    assert (ROOT / gl.PAGE_FILE).read_text(encoding="utf-8") == gl.render_page(glossary)
    assert [en for en, _ in _page_rows()] == [t.en for t in glossary.terms]


def test_each_box_is_the_admonition_in_the_first_markdown_cell():
    glossary = gl.load()
    for notebook in glossary.notebooks:
        cells = _markdown_cells(ROOT / gl.notebook_path(notebook))
        assert gl.render_box(glossary, notebook) in cells[0], notebook
        assert not any("Key terms / 用語" in cell for cell in cells[1:]), notebook
        assert [row[0] for row in gl.parse_box(cells[0])] == [t.en for t in glossary.terms_for(notebook)]


def test_no_english_term_has_two_japanese_glosses_across_the_book():
    """Read back what the pages show (every box and the glossary page), independently of the source."""
    glosses: dict[str, set[str]] = {}
    for path in _notebooks():
        for en, ja, _meaning in gl.parse_box(_markdown_cells(path)[0]):
            glosses.setdefault(en, set()).add(ja)
    for en, ja in _page_rows():
        glosses.setdefault(en, set()).add(ja)
    assert len(glosses) >= 100
    two = {en: sorted(ja) for en, ja in glosses.items() if len(ja) > 1}
    assert not two, two


def test_avoided_japanese_spellings_do_not_appear_in_the_book():
    """The review fixes stay fixed: e.g. 長・短期記憶, Nグラム, 二乗のコスト, 回答の棄権."""
    glossary = gl.load()
    texts = {gl.PAGE_FILE: (ROOT / gl.PAGE_FILE).read_text(encoding="utf-8")}
    for path in _notebooks():
        cells = _markdown_cells(path)
        # book notebooks: all their prose; labs: the first cell (the rest is the exercises)
        texts[str(path.relative_to(ROOT))] = "\n".join(cells if path.parent.name == "book" else cells[:1])
    accepted = sorted({t.ja for t in glossary.terms}, key=len, reverse=True)
    found = []
    for where, text in texts.items():
        for ja in accepted:  # 平行移動不変性（位置不変性） contains the avoided 位置不変性
            text = text.replace(ja, "")
        found += [(where, term.en, bad) for term in glossary.terms for bad in term.avoid if bad in text]
    assert not found, found


def test_review_glosses_are_used():
    by_en = {t.en: t.ja for t in gl.load().terms}
    assert by_en["translation invariance"] == "平行移動不変性（位置不変性）"
    assert by_en["translation equivariance"] == "平行移動同変性"
    assert by_en["long short-term memory (LSTM)"] == "長短期記憶"
    assert by_en["n-gram"] == "n-グラム"
    assert by_en["multi-head attention"] == "マルチヘッドアテンション"
    assert by_en["model, data, compute"] == "モデル・データ・計算資源"
    assert by_en["position-wise feed-forward network"] == "位置ごとの順伝播ネットワーク"
    assert by_en["quadratic cost"] == "系列長の二乗に比例する計算量"
    assert by_en["top-k sampling"].startswith("Top-k") and by_en["top-p (nucleus) sampling"].startswith("Top-p")
    assert by_en["ignore index"] == "ignore_index（損失で無視するラベル値）"
    assert by_en["WordPiece"] == "WordPiece"
    assert by_en["compression ratio"] == "圧縮比"
    assert by_en["abstention"] == "回答の保留"
    assert by_en["reverse process"] == "逆拡散過程"
    assert by_en["DDPM"] == "DDPM（ノイズ除去拡散確率モデル）"


# --- rendering -------------------------------------------------------------------------------


def _tiny() -> dict:
    return {
        "notebooks": ["01_cnn", "01_cnn_lab", "02_rnn"],
        "no_box": ["results"],
        "terms": [
            {"en": "convolution", "ja": "畳み込み", "meaning": "slide a kernel", "in": ["01_cnn", "01_cnn_lab"]},
            {"en": "language model", "ja": "言語モデル", "meaning": "P(text)", "in": ["02_rnn"]},
            {"en": "stride", "ja": "ストライド", "meaning": "step `s`", "in": ["01_cnn_lab", "02_rnn"],
             "avoid": ["歩幅"]},
        ],
    }


def test_render_box_is_an_admonition_table_new_terms_first():
    glossary = gl.validate(_tiny())
    assert gl.render_box(glossary, "02_rnn").splitlines() == [
        "```{admonition} Key terms / 用語",
        "| English | 日本語 | meaning |",
        "| --- | --- | --- |",
        "| language model | 言語モデル | P(text) |",   # introduced here: first
        "| stride | ストライド | step `s` |",        # lab 1 listed it already
        "```",
    ]
    assert [t.en for t in glossary.terms_for("01_cnn_lab")] == ["stride", "convolution"]
    with pytest.raises(ValueError, match="notebook '99_nope'"):
        gl.render_box(glossary, "99_nope")
    with pytest.raises(TypeError, match="glossary"):
        gl.render_box(_tiny(), "01_cnn")


def test_render_page_lists_chapters_and_labs():
    page = gl.render_page(gl.validate(_tiny()))
    assert "| convolution | 畳み込み | slide a kernel | [1](01_cnn.ipynb) | [1](../labs/01_cnn_lab.ipynb) |" in page
    assert "| stride | ストライド | step `s` | [2](02_rnn.ipynb) | [1](../labs/01_cnn_lab.ipynb) |" in page
    assert page.startswith("# Glossary / 用語集\n") and page.endswith("\n")


def test_replace_box_replaces_converts_appends_and_refuses_two():
    box = "```{admonition} Key terms / 用語\n| English | 日本語 | meaning |\n| --- | --- | --- |\n| a | b | c |\n```"
    admonition = "# T\n\n```{admonition} Key terms / 用語\n| English | 日本語 | meaning |\n| --- | --- | --- |\n" \
                 "| old | 古い | x |\n```\n\nAfter."
    assert gl.replace_box(admonition, box) == f"# T\n\n{box}\n\nAfter."
    bold = "# T\n\n**Key terms / 用語**\n\n| English | 日本語 | meaning |\n| --- | --- | --- |\n| old | 古い | x |\n"
    assert gl.replace_box(bold, box) == f"# T\n\n{box}\n"
    bare = "# T\n\nIntro.\n\n| English | 日本語 |\n| --- | --- |\n| old | 古い |"
    assert gl.replace_box(bare, box) == f"# T\n\nIntro.\n\n{box}"
    assert gl.replace_box("# T\n\nIntro.\n", box) == f"# T\n\nIntro.\n\n{box}"
    assert gl.replace_box(admonition, None) == "# T\n\nAfter."
    assert gl.replace_box(gl.replace_box(bold, box), box) == gl.replace_box(bold, box)
    with pytest.raises(ValueError, match="2 Key terms boxes"):
        gl.replace_box(admonition + "\n\n" + box, box)
    with pytest.raises(TypeError, match="markdown"):
        gl.replace_box(None, box)


def test_parse_box_reads_back_render_box():
    glossary = gl.validate(_tiny())
    rows = gl.parse_box("# T\n\n" + gl.render_box(glossary, "01_cnn_lab") + "\n\nMore.")
    assert rows == [("stride", "ストライド", "step `s`"), ("convolution", "畳み込み", "slide a kernel")]
    assert gl.parse_box("no box here") == []


# --- bad entries -----------------------------------------------------------------------------


def _with(change) -> dict:
    data = copy.deepcopy(_tiny())
    change(data)
    return data


@pytest.mark.parametrize("change, error, message", [
    (lambda d: d["terms"].append({"en": "Convolution", "ja": "x", "meaning": "y", "in": ["01_cnn"]}),
     ValueError, r"#4 \('Convolution'\): duplicate English term 'Convolution' \(already term #1\)"),
    (lambda d: d["terms"][1].pop("ja"), ValueError, r"#2 \('language model'\) is missing field\(s\) \['ja'\]"),
    (lambda d: d["terms"][0].pop("en"), ValueError, r"#1 is missing field\(s\) \['en'\]"),
    (lambda d: d["terms"][2]["in"].append("03_nope"), ValueError,
     r"#3 \('stride'\): unknown notebook id\(s\) \['03_nope'\]"),
    (lambda d: d["terms"][0].update(gloss="x"), ValueError, r"#1 \('convolution'\) has unknown field\(s\) \['gloss'\]"),
    (lambda d: d["terms"][1].update(meaning=""), ValueError, r"'language model'\): field 'meaning' is empty"),
    (lambda d: d["terms"][1].update(meaning="a | b"), ValueError, r"field 'meaning' must be one line without '\|'"),
    (lambda d: d["terms"][1].update(ja=3), TypeError, r"field 'ja' must be a string"),
    (lambda d: d["terms"][1].update({"in": "02_rnn"}), TypeError, r"field 'in' must be a non-empty list"),
    (lambda d: d["terms"][2].update(avoid=["ストライド"]), ValueError, r"'avoid' lists the term's own gloss"),
    (lambda d: d["notebooks"].append("03_attention"), ValueError, r"\['03_attention'\] list no term"),
    (lambda d: d["notebooks"].append("attention"), ValueError, r"id 'attention' must start with its two-digit"),
    (lambda d: d["no_box"].append("01_cnn"), ValueError, r"\['01_cnn'\] are in both"),
    (lambda d: d.pop("terms"), ValueError, r"no 'terms' list"),
    (lambda d: d.update(chapters=[]), ValueError, r"unknown top-level keys \['chapters'\]"),
])
def test_bad_entries_raise_clear_errors(change, error, message):
    with pytest.raises(error, match=message):
        gl.validate(_with(change))


def test_load_reports_bad_yaml_and_missing_file(tmp_path):
    bad = tmp_path / "glossary.yml"
    bad.write_text("terms: [\n", encoding="utf-8")
    with pytest.raises(ValueError, match="not valid YAML"):
        gl.load(bad)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        gl.load(tmp_path / "none.yml")
    with pytest.raises(TypeError, match="must be a mapping"):
        gl.validate(["terms"])


# --- sync on a scratch copy ------------------------------------------------------------------


def _notebook(*markdown: str, code: str = "x = 1") -> dict:
    cells = [{"cell_type": "markdown", "id": f"m{i}", "metadata": {}, "source": text.splitlines(True)}
             for i, text in enumerate(markdown)]
    cells.insert(1, {"cell_type": "code", "execution_count": None, "id": "c0", "metadata": {},
                     "outputs": [], "source": [code]})
    return {"cells": cells, "metadata": {}, "nbformat": 4, "nbformat_minor": 5}


def _scratch(tmp_path) -> Path:
    (tmp_path / "book").mkdir()
    (tmp_path / "labs").mkdir()
    books = {"01_cnn": _notebook("# CNN\n\n**Key terms / 用語**\n\n| English | 日本語 | meaning |\n| --- | --- | --- |\n"
                                 "| convolution | 畳み込み | old |\n", "## Later\n\nText."),
             "02_rnn": _notebook("# RNN\n\nNo box yet."),
             "results": _notebook("# Results")}
    for stem, nb in books.items():
        (tmp_path / "book" / f"{stem}.ipynb").write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n")
    lab = _notebook("# Lab 1\n\n| English | 日本語 |\n| --- | --- |\n| stride | ストライド |\n\nWrite it.")
    (tmp_path / "labs" / "01_cnn_lab.ipynb").write_text(json.dumps(lab, indent=1, ensure_ascii=False) + "\n")
    return tmp_path


def test_sync_rewrites_only_the_first_markdown_cell_and_is_then_clean(tmp_path):
    root = _scratch(tmp_path)
    glossary = gl.validate(_tiny())
    before = {p: json.loads(p.read_text()) for p in root.glob("*/*.ipynb")}
    expected = ["book/01_cnn.ipynb", "book/02_rnn.ipynb", "labs/01_cnn_lab.ipynb", "book/glossary.md"]
    assert gl.sync(write=False, root=root, glossary=glossary) == expected
    assert not (root / "book" / "glossary.md").exists()       # a check writes nothing
    assert gl.sync(write=True, root=root, glossary=glossary) == expected
    assert gl.sync(write=False, root=root, glossary=glossary) == []
    for path, old in before.items():
        new = json.loads(path.read_text())
        assert new["cells"][1:] == old["cells"][1:]           # code and later cells untouched
        first = "".join(new["cells"][0]["source"])
        if path.stem == "results":
            assert new == old
        else:
            assert first == gl.replace_box("".join(old["cells"][0]["source"]), gl.render_box(glossary, path.stem))
    lab = "".join(json.loads((root / "labs" / "01_cnn_lab.ipynb").read_text())["cells"][0]["source"])
    assert lab.startswith("# Lab 1\n\n```{admonition} Key terms / 用語\n") and lab.endswith("```\n\nWrite it.")
    assert (root / "book" / "glossary.md").read_text(encoding="utf-8") == gl.render_page(glossary)


def test_sync_refuses_unlisted_notebooks_and_bad_arguments(tmp_path):
    root = _scratch(tmp_path)
    (root / "labs" / "02_rnn_lab.ipynb").write_text(json.dumps(_notebook("# Lab 2")))
    with pytest.raises(ValueError, match=r"\['labs/02_rnn_lab.ipynb'\] are not in glossary.yml"):
        gl.sync(root=root, glossary=gl.validate(_tiny()))
    with pytest.raises(TypeError, match="write must be True or False"):
        gl.sync(write="yes", root=root)
    with pytest.raises(FileNotFoundError, match="no book/ folder"):
        gl.sync(root=tmp_path / "labs")


def test_cli_check_passes_on_the_repository(capsys):
    assert main(["glossary", "--check"]) == 0
    assert "all in sync" in capsys.readouterr().out

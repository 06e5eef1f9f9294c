"""One glossary for the whole book: ``genai_lab/glossary.yml`` → every Key terms box and the glossary page.

Each term lives once in ``glossary.yml`` (English, 日本語, a one-line meaning, the notebooks whose
"Key terms / 用語" box lists it).  This module

- :func:`load` reads and validates that file into a :class:`Glossary` (a clear ``ValueError`` or
  ``TypeError`` names the bad entry: a duplicate English term, a missing or unknown field, an
  unknown notebook id);
- :func:`render_box` writes one notebook's box: a MyST admonition holding the table
  English | 日本語 | meaning;
- :func:`render_page` writes ``book/glossary.md``;
- :func:`sync` puts the rendered box into the first markdown cell of every ``book/*.ipynb`` and
  ``labs/*.ipynb`` (replacing the old box, or appending one) and rewrites the glossary page.

From the shell: ``python -m genai_lab glossary --check`` (exit 1 when something is out of date)
or ``python -m genai_lab glossary --write``.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

GLOSSARY_FILE = Path(__file__).with_name("glossary.yml")
REPO_ROOT = Path(__file__).resolve().parents[1]
BOX_TITLE = "Key terms / 用語"
PAGE_FILE = "book/glossary.md"

REQUIRED_FIELDS = ("en", "ja", "meaning", "in")
OPTIONAL_FIELDS = ("avoid",)
_NOTEBOOK_ID = re.compile(r"^[a-z0-9][a-z0-9_]*$")
_CHAPTER_ID = re.compile(r"^\d\d_[a-z0-9_]+$")  # a notebook with a box: NN_ gives its chapter

_BOX = re.compile(r"^```\{admonition\} " + re.escape(BOX_TITLE) + r"[ \t]*\n.*?^```[ \t]*(?:\n|\Z)",
                  re.M | re.S)
# Older hand-written forms, converted by sync: a bold heading over a table, or a bare table.
_OLD_BOX = re.compile(r"^\*\*" + re.escape(BOX_TITLE) + r"\*\*[ \t]*\n(?:[ \t]*\n)?(?:\|.*(?:\n|\Z))+"
                      r"|^\| English \| 日本語 \|.*\n(?:\|.*(?:\n|\Z))+", re.M)


@dataclass(frozen=True)
class Term:
    """One glossary entry; ``notebooks`` are the ids whose Key terms box lists it."""

    en: str
    ja: str
    meaning: str
    notebooks: tuple[str, ...]
    avoid: tuple[str, ...] = ()


@dataclass(frozen=True)
class Glossary:
    """The validated glossary: notebooks in reading order, notebooks without a box, the terms."""

    notebooks: tuple[str, ...]
    no_box: tuple[str, ...]
    terms: tuple[Term, ...]

    def terms_for(self, notebook: str) -> list[Term]:
        """The terms of ``notebook``'s box: the ones it introduces first, then those an earlier
        notebook (in reading order) already listed; each group in the file's order."""
        if notebook not in self.notebooks:
            raise ValueError(f"notebook {notebook!r} is not in the glossary's notebooks: "
                             f"choose from {list(self.notebooks)}")
        position = {n: i for i, n in enumerate(self.notebooks)}
        mine = [t for t in self.terms if notebook in t.notebooks]

        def seen_before(term: Term) -> bool:
            return min(position[n] for n in term.notebooks) < position[notebook]

        return [t for t in mine if not seen_before(t)] + [t for t in mine if seen_before(t)]


def notebook_path(notebook: str) -> str:
    """Repository-relative path of a notebook id: ``01_cnn`` → ``book/01_cnn.ipynb``,
    ``01_cnn_lab`` → ``labs/01_cnn_lab.ipynb``."""
    if not isinstance(notebook, str) or not _NOTEBOOK_ID.match(notebook):
        raise ValueError(f"notebook must be a file name without .ipynb like '01_cnn' or '01_cnn_lab', "
                         f"got {notebook!r}")
    return f"labs/{notebook}.ipynb" if notebook.endswith("_lab") else f"book/{notebook}.ipynb"


def _text_field(entry_name: str, field: str, value) -> str:
    if not isinstance(value, str):
        raise TypeError(f"glossary term {entry_name}: field {field!r} must be a string, got {value!r}")
    if not value.strip():
        raise ValueError(f"glossary term {entry_name}: field {field!r} is empty")
    if "\n" in value or "|" in value:
        raise ValueError(f"glossary term {entry_name}: field {field!r} must be one line without '|', "
                         f"got {value!r}")
    return value.strip()


def _id_list(where: str, value, numbered: bool) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise TypeError(f"{where} must be a list of notebook ids, got {value!r}")
    for v in value:
        notebook_path(v)  # checks the form of the id
        if numbered and not _CHAPTER_ID.match(v):
            raise ValueError(f"{where}: id {v!r} must start with its two-digit chapter number, e.g. '01_cnn'")
    duplicates = sorted({v for v in value if value.count(v) > 1})
    if duplicates:
        raise ValueError(f"{where} lists {duplicates} twice")
    return tuple(value)


def validate(data) -> Glossary:
    """Check the parsed contents of ``glossary.yml`` and return the :class:`Glossary`.

    ``data`` is a mapping with ``notebooks`` (ids in reading order), optional ``no_box`` (ids) and
    ``terms`` (a list of mappings with ``en``, ``ja``, ``meaning``, ``in`` and optional ``avoid``).
    Raises ``TypeError``/``ValueError`` naming the bad entry and field.
    """
    if not isinstance(data, dict):
        raise TypeError(f"the glossary must be a mapping with 'notebooks' and 'terms', got {type(data).__name__}")
    unknown = sorted(set(data) - {"notebooks", "no_box", "terms"})
    if unknown:
        raise ValueError(f"the glossary has unknown top-level keys {unknown}: "
                         "expected 'notebooks', 'no_box', 'terms'")
    for key in ("notebooks", "terms"):
        if key not in data:
            raise ValueError(f"the glossary has no {key!r} list")
    notebooks = _id_list("glossary 'notebooks'", data["notebooks"], numbered=True)
    no_box = _id_list("glossary 'no_box'", data.get("no_box") or [], numbered=False)
    both = sorted(set(notebooks) & set(no_box))
    if both:
        raise ValueError(f"glossary notebooks {both} are in both 'notebooks' and 'no_box'")
    if not isinstance(data["terms"], list) or not data["terms"]:
        raise TypeError("glossary 'terms' must be a non-empty list of mappings")

    terms: list[Term] = []
    seen: dict[str, int] = {}
    for number, entry in enumerate(data["terms"], start=1):
        if not isinstance(entry, dict):
            raise TypeError(f"glossary term #{number} must be a mapping, got {entry!r}")
        name = f"#{number} ({entry['en']!r})" if isinstance(entry.get("en"), str) else f"#{number}"
        missing = [f for f in REQUIRED_FIELDS if f not in entry]
        if missing:
            raise ValueError(f"glossary term {name} is missing field(s) {missing}")
        extra = sorted(set(entry) - set(REQUIRED_FIELDS) - set(OPTIONAL_FIELDS))
        if extra:
            raise ValueError(f"glossary term {name} has unknown field(s) {extra}; "
                             f"allowed: {list(REQUIRED_FIELDS + OPTIONAL_FIELDS)}")
        en, ja, meaning = (_text_field(name, f, entry[f]) for f in ("en", "ja", "meaning"))
        key = en.casefold()
        if key in seen:
            raise ValueError(f"glossary term {name}: duplicate English term {en!r} "
                             f"(already term #{seen[key]})")
        seen[key] = number
        listed = entry["in"]
        if not isinstance(listed, list) or not listed or not all(isinstance(n, str) for n in listed):
            raise TypeError(f"glossary term {name}: field 'in' must be a non-empty list of notebook ids, "
                            f"got {listed!r}")
        unknown_ids = [n for n in listed if n not in notebooks]
        if unknown_ids:
            raise ValueError(f"glossary term {name}: unknown notebook id(s) {unknown_ids} in 'in'; "
                             f"known: {list(notebooks)}")
        if len(set(listed)) != len(listed):
            raise ValueError(f"glossary term {name}: field 'in' lists a notebook twice: {listed}")
        avoid = entry.get("avoid", [])
        if not isinstance(avoid, list):
            raise TypeError(f"glossary term {name}: field 'avoid' must be a list of strings, got {avoid!r}")
        avoid = tuple(_text_field(name, "avoid", a) for a in avoid)
        if ja in avoid:
            raise ValueError(f"glossary term {name}: 'avoid' lists the term's own gloss {ja!r}")
        terms.append(Term(en, ja, meaning, tuple(listed), avoid))

    empty = [n for n in notebooks if not any(n in t.notebooks for t in terms)]
    if empty:
        raise ValueError(f"glossary notebooks {empty} list no term: give them terms or move them to 'no_box'")
    return Glossary(notebooks, no_box, tuple(terms))


def load(path: str | Path | None = None) -> Glossary:
    """Read and validate the glossary file (default: ``genai_lab/glossary.yml``)."""
    import yaml

    path = Path(path) if path is not None else GLOSSARY_FILE
    if not path.is_file():
        raise FileNotFoundError(f"glossary file {path} does not exist")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ValueError(f"glossary file {path} is not valid YAML: {exc}") from None
    return validate(data)


def _row(*cells: str) -> str:
    return "| " + " | ".join(cells) + " |"


def render_box(glossary: Glossary, notebook: str) -> str:
    """The Key terms box of one notebook as Markdown (a MyST admonition with a table), no trailing newline."""
    if not isinstance(glossary, Glossary):
        raise TypeError(f"glossary must be a Glossary (from load()), got {type(glossary).__name__}")
    lines = [f"```{{admonition}} {BOX_TITLE}", _row("English", "日本語", "meaning"), _row("---", "---", "---")]
    lines += [_row(t.en, t.ja, t.meaning) for t in glossary.terms_for(notebook)]
    lines.append("```")
    return "\n".join(lines)


def _where(term: Term, labs: bool) -> str:
    """Links from the glossary page (in book/) to the chapters (or labs) listing ``term``:
    one link per chapter number, to the first of its notebooks in reading order."""
    first: dict[int, str] = {}
    for n in term.notebooks:
        if n.endswith("_lab") == labs:
            first.setdefault(int(n[:2]), n)
    target = "../labs/{}.ipynb" if labs else "{}.ipynb"
    return ", ".join(f"[{number}]({target.format(first[number])})" for number in sorted(first))


def render_page(glossary: Glossary) -> str:
    """The text of ``book/glossary.md``: every term with the chapters and labs that list it."""
    if not isinstance(glossary, Glossary):
        raise TypeError(f"glossary must be a Glossary (from load()), got {type(glossary).__name__}")
    lines = [
        "# Glossary / 用語集",
        "",
        "% Generated from genai_lab/glossary.yml by `python -m genai_lab glossary --write`: edit that file.",
        "",
        "Every term of the chapters' and labs' Key terms boxes, in English and Japanese, with the",
        "chapters and labs that list it. Each term has one Japanese gloss, used throughout the book.",
        "",
        _row("English", "日本語", "meaning", "chapter", "lab"),
        _row("---", "---", "---", "---", "---"),
    ]
    lines += [_row(t.en, t.ja, t.meaning, _where(t, labs=False), _where(t, labs=True))
              for t in glossary.terms]
    return "\n".join(lines) + "\n"


def replace_box(markdown: str, box: str | None) -> str:
    """``markdown`` with its Key terms box replaced by ``box`` (appended when it has none;
    removed when ``box`` is None).  Older forms (a bold ``**Key terms / 用語**`` heading over a
    table, or a bare ``| English | 日本語 |`` table) are replaced too."""
    if not isinstance(markdown, str):
        raise TypeError(f"markdown must be a str, got {type(markdown).__name__}")
    if box is not None and not isinstance(box, str):
        raise TypeError(f"box must be a str or None, got {type(box).__name__}")
    found = list(_BOX.finditer(markdown)) or list(_OLD_BOX.finditer(markdown))
    if len(found) > 1:
        raise ValueError(f"markdown holds {len(found)} Key terms boxes; expected at most one")
    if not found:
        if box is None:
            return markdown
        return markdown.rstrip() + "\n\n" + box
    match = found[0]
    before, after = markdown[:match.start()], markdown[match.end():]
    if box is None:
        return "\n\n".join(part for part in (before.rstrip(), after.strip("\n").rstrip()) if part)
    return before + box + ("\n" if match.group(0).endswith("\n") else "") + after


def parse_box(markdown: str) -> list[tuple[str, str, str]]:
    """The ``(English, 日本語, meaning)`` rows of the Key terms box in ``markdown`` (empty without one)."""
    match = _BOX.search(markdown) or _OLD_BOX.search(markdown)
    if not match:
        return []
    rows = []
    for line in match.group(0).splitlines():
        if not line.startswith("|"):
            continue
        cells = [c.strip() for c in line.strip().strip("|").split(" | ")]
        if cells[:2] == ["English", "日本語"] or set(cells[0]) <= {"-", " "}:
            continue
        rows.append(tuple((cells + ["", ""])[:3]))
    return rows


def _first_markdown_cell(nb: dict, path: str) -> dict:
    for cell in nb.get("cells", []):
        if cell.get("cell_type") == "markdown":
            return cell
    raise ValueError(f"{path} has no markdown cell to hold the Key terms box")


def _source_text(cell: dict) -> str:
    source = cell.get("source", "")
    return "".join(source) if isinstance(source, list) else source


def _dump_notebook(nb: dict) -> str:
    return json.dumps(nb, indent=1, ensure_ascii=False) + "\n"


def sync(write: bool = False, root: str | Path | None = None, glossary: Glossary | None = None) -> list[str]:
    """Compare (``write=False``) or rewrite (``write=True``) every Key terms box and the glossary page.

    Looks at the first markdown cell of every ``book/*.ipynb`` and ``labs/*.ipynb`` under ``root``
    (default: this checkout) and at ``book/glossary.md``.  Returns the repository-relative paths
    whose text differs from what the glossary renders (with ``write=True``: the paths rewritten).
    Only that cell and that page are touched; each notebook is read and written back at once.
    """
    if not isinstance(write, bool):
        raise TypeError(f"write must be True or False, got {write!r}")
    root = Path(root) if root is not None else REPO_ROOT
    if not (root / "book").is_dir():
        raise FileNotFoundError(f"root {root} has no book/ folder: sync needs the repository checkout")
    glossary = glossary if glossary is not None else load()
    if not isinstance(glossary, Glossary):
        raise TypeError(f"glossary must be a Glossary (from load()), got {type(glossary).__name__}")

    files = sorted(root.glob("book/*.ipynb")) + sorted(root.glob("labs/*.ipynb"))
    known = set(glossary.notebooks) | set(glossary.no_box)
    strays = [str(f.relative_to(root)) for f in files if f.stem not in known]
    if strays:
        raise ValueError(f"notebooks {strays} are not in glossary.yml: add them to 'notebooks' "
                         "(with terms) or to 'no_box'")
    missing = [notebook_path(n) for n in glossary.notebooks if not (root / notebook_path(n)).is_file()]
    if missing:
        raise ValueError(f"glossary.yml lists notebooks that do not exist: {missing}")

    changed = []
    for file in files:
        rel = str(file.relative_to(root))
        box = render_box(glossary, file.stem) if file.stem in glossary.notebooks else None
        text = file.read_text(encoding="utf-8")
        nb = json.loads(text)
        cell = _first_markdown_cell(nb, rel)
        old = _source_text(cell)
        new = replace_box(old, box)
        if new == old:
            continue
        changed.append(rel)
        if write:
            cell["source"] = new.splitlines(keepends=True)
            file.write_text(_dump_notebook(nb), encoding="utf-8")

    page = root / PAGE_FILE
    text = render_page(glossary)
    if not page.is_file() or page.read_text(encoding="utf-8") != text:
        changed.append(PAGE_FILE)
        if write:
            page.write_text(text, encoding="utf-8")
    return changed


def cmd_glossary(args) -> int:
    glossary = load()
    changed = sync(write=args.write, glossary=glossary)
    if args.write:
        for path in changed:
            print(f"rewrote {path}")
        print(f"glossary: {len(glossary.terms)} terms, {len(glossary.notebooks)} boxes, "
              f"{len(changed)} file(s) rewritten")
        return 0
    for path in changed:
        print(f"out of date: {path}")
    if changed:
        print("run `python -m genai_lab glossary --write` to update them")
        return 1
    print(f"glossary: {len(glossary.terms)} terms, {len(glossary.notebooks)} boxes, all in sync")
    return 0


def add_cli(subparsers) -> None:
    """Add ``glossary [--check|--write]`` to the ``python -m genai_lab`` command line."""
    p = subparsers.add_parser("glossary", help="check or rewrite the Key terms boxes and book/glossary.md "
                                               "from genai_lab/glossary.yml")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--check", action="store_true", help="report what is out of date, exit 1 if any (default)")
    mode.add_argument("--write", action="store_true", help="rewrite the boxes and the page")
    p.set_defaults(func=cmd_glossary)

"""Reuse executed notebooks whose inputs did not change (what myst-nb's jupyter-cache does for
a myst-nb build; the book's notebooks are executed by nbmake, so the cache lives here).

    python .ci/nbcache.py restore _stage cpu _build/nbcache   # copy cached outputs into the stage
    python .ci/nbcache.py save    _stage cpu _build/nbcache   # store the stage's executed copies

A notebook's key hashes its own source, every file of the genai_lab package, requirements.txt
and the profile: change any of them and it runs again.  ``restore`` writes the restored
notebooks' stage paths to ``<stage>/.restored`` (``nbbudget.py … --stage`` leaves them out).
"""

from __future__ import annotations

import hashlib
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _inputs_digest() -> str:
    h = hashlib.sha256()
    files = sorted(p for p in (ROOT / "genai_lab").rglob("*")
                   if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc")
    for path in files + [ROOT / "requirements.txt", ROOT / "requirements-nodeps.txt"]:
        h.update(str(path.relative_to(ROOT)).encode())
        h.update(path.read_bytes())
    return h.hexdigest()


def key(source: Path, profile: str, inputs: str) -> str:
    h = hashlib.sha256(inputs.encode() + profile.encode())
    h.update(source.read_bytes())
    return h.hexdigest()[:32]


def main(argv: list[str]) -> int:
    if len(argv) != 4 or argv[0] not in ("restore", "save"):
        print(__doc__, file=sys.stderr)
        return 2
    action, stage, profile, cache = argv[0], Path(argv[1]), argv[2], Path(argv[3])
    inputs = _inputs_digest()
    cache.mkdir(parents=True, exist_ok=True)
    restored = []
    for folder in ("book", "labs"):
        for staged in sorted((stage / folder).glob("*.ipynb")):
            source = ROOT / folder / staged.name
            cached = cache / f"{key(source, profile, inputs)}.ipynb"
            if action == "restore" and cached.is_file():
                shutil.copyfile(cached, staged)
                restored.append(str(staged))
            elif action == "save":
                shutil.copyfile(staged, cached)
    if action == "restore":
        (stage / ".restored").write_text("\n".join(restored) + ("\n" if restored else ""))
        print(f"[nbcache] {len(restored)} notebooks reused from {cache}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

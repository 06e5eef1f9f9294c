"""Command line: ``python -m genai_lab info | bench | labs``.

Chapters may add their own sub-commands (e.g. ``rag``) by defining ``add_cli(subparsers)`` in
their module and listing it in ``EXTRA_COMMANDS``.
"""

from __future__ import annotations

import argparse
import importlib
import json
import platform
import sys

#: modules that add sub-commands: each defines ``add_cli(subparsers)``; missing ones are skipped.
EXTRA_COMMANDS = ("genai_lab.rag.cli", "genai_lab.glossary", "genai_lab.launch", "genai_lab.serve.cli")


def _versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": platform.python_version()}
    for pkg in ("torch", "transformers", "diffusers", "peft", "sentence-transformers", "bertviz",
                "jupyter-book", "genai_lab"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = "not installed"
    return out


def info_dict() -> dict:
    """Everything ``info`` reports, as a dict."""
    import torch

    from . import data, models
    from .config import cache_dir, default_profile, pick_device

    return {
        "profile": default_profile(),
        "device": str(pick_device()),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "threads": torch.get_num_threads(),
        "cache": str(cache_dir()),
        "network_allowed": data.network_allowed(),
        "versions": _versions(),
        "datasets": {name: data.dataset_sources(name) for name in data.REGISTRY},
        "models": {name: models.model_source(name) for name in models.REGISTRY},
    }


def cmd_info(args) -> int:
    info = info_dict()
    if args.json:
        print(json.dumps(info, indent=1))
        return 0
    print(f"profile: {info['profile']}   device: {info['device']}"
          + (f" ({info['cuda']})" if info["cuda"] else "") + f"   threads: {info['threads']}")
    print(f"cache:   {info['cache']}   network allowed: {info['network_allowed']}")
    print("versions: " + ", ".join(f"{k} {v}" for k, v in info["versions"].items()))
    print("datasets:")
    for name, files in info["datasets"].items():
        for f, where in files.items():
            print(f"  {name:17s} {f:40s} {where}")
    print("models:")
    for name, where in info["models"].items():
        print(f"  {name:17s} {where}")
    return 0


def cmd_bench(args) -> int:
    from . import bench
    from .config import setup

    cfg = setup(args.profile, verbose=not args.json)
    entries = bench.discover()
    chapters = args.chapter or None
    if chapters:
        unknown = [c for c in chapters if c not in entries]
        if unknown:
            print(f"error: --chapter {unknown[0]!r} is not registered; choose from {sorted(entries)}",
                  file=sys.stderr)
            return 2
    rows = bench.run(chapters, cfg, record=args.record)
    if args.json:
        print(json.dumps(rows, indent=1))
    else:
        print(bench.format_table(rows))
    return 1 if any(r["passed"] is False for r in rows) and args.strict else 0


def cmd_labs(args) -> int:
    from . import labs

    write = labs.write_solved_versions if args.labs_command == "solved" else labs.write_student_versions
    written = write(args.outdir, args.notebooks or None)
    for p in written:
        print(f"wrote {p}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m genai_lab",
                                     description="genai-lab: helpers for the lab book on generative AI")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("info", help="profile, device, versions, where datasets and models come from")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_info)
    p = sub.add_parser("bench", help="run the chapters' reference experiments and print metrics")
    p.add_argument("--chapter", action="append", help="only this chapter (repeatable)")
    p.add_argument("--profile", choices=("smoke", "cpu", "gpu"), help="override GENAI_LAB_PROFILE")
    p.add_argument("--json", action="store_true", help="print a JSON list, one object per metric")
    p.add_argument("--strict", action="store_true", help="exit 1 when a metric misses its bar")
    p.add_argument("--record", action="store_true",
                   help="merge the rows into the committed results of the profile "
                        "(genai_lab/results/<profile>.json, cpu or gpu) with their provenance")
    p.set_defaults(func=cmd_bench)
    p = sub.add_parser("labs", help="lab notebooks")
    labs_sub = p.add_subparsers(dest="labs_command", required=True)
    s = labs_sub.add_parser("solved", help="write the labs with the stubs replaced by the reference "
                                           "solutions (genai_lab/solutions), e.g. to run them strict")
    s.add_argument("outdir", help="folder to write the notebooks into")
    s.add_argument("notebooks", nargs="*", help="lab notebooks (default: all of labs/)")
    s.set_defaults(func=cmd_labs)
    s = labs_sub.add_parser("student", help="write fresh learner copies of the labs (as shipped, outputs cleared)")
    s.add_argument("outdir", help="folder to write the notebooks into")
    s.add_argument("notebooks", nargs="*", help="lab notebooks (default: all of labs/)")
    s.set_defaults(func=cmd_labs)
    for mod_name in EXTRA_COMMANDS:
        try:
            mod = importlib.import_module(mod_name)
        except ModuleNotFoundError as exc:
            if exc.name and mod_name.startswith(exc.name):
                continue
            raise
        mod.add_cli(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
        return args.func(args)
    except (ValueError, FileNotFoundError, TypeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130

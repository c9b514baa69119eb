"""The ``protoseg`` program: a thin shell that parses arguments and calls the library.

Each subcommand lives in ``protoseg.commands.<name>`` and provides ``HELP`` (one line),
``add_arguments(parser)`` and ``run(args) -> int | None``. Command modules import heavy libraries
(torch, h5py, uproot) inside ``run`` so that ``protoseg --help`` stays fast.
"""
from __future__ import annotations

import argparse
import contextlib
import importlib
import signal
import sys
from collections.abc import Iterator

from protoseg.version import __version__
from protoseg.errors import SIGTERM_EXIT_CODE, InputError, Terminated

# Order is the order shown by --help: the data flow of DESIGN.md.
COMMANDS: dict[str, str] = {
    "simulate": "protoseg.commands.simulate",
    "import-root": "protoseg.commands.import_root",
    "images": "protoseg.commands.images",
    "stats": "protoseg.commands.stats",
    "train": "protoseg.commands.train",
    "evaluate": "protoseg.commands.evaluate",
    "predict": "protoseg.commands.predict",
    "export": "protoseg.commands.export",
    "display": "protoseg.commands.display",
    "demo": "protoseg.commands.demo",
}

# Commands that run the network: they keep freed memory in the process (protoseg.models.tune_cpu_allocator).
_NETWORK_COMMANDS = {"train", "evaluate", "predict", "export", "demo"}


def version_text() -> str:
    """What ``protoseg --version`` prints: the package version, then each shipped model with its model version.

    Reads the model cards (``protoseg/pretrained/NAME.json``) as plain JSON, so it needs neither torch nor
    the weights; a card without ``model_version`` (a model shipped before model versions) shows ``unversioned``.
    """
    import json
    from pathlib import Path

    lines = [f"protoseg {__version__}"]
    pretrained = Path(__file__).parent / "pretrained"
    names = sorted(p.stem for p in pretrained.glob("*.safetensors"))
    if not names:
        lines.append("no shipped models in this installation")
        return "\n".join(lines)
    lines.append("shipped models:")
    width = max(len(name) for name in names)
    for name in names:
        try:
            card = json.loads((pretrained / f"{name}.json").read_text(encoding="utf-8"))
            version = str(card.get("model_version") or "unversioned") if isinstance(card, dict) else "unreadable card"
        except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError):
            version = "unreadable card"
        lines.append(f"  {name:<{width}}  {version}")
    return "\n".join(lines)


class _VersionAction(argparse.Action):
    """``--version``: print :func:`version_text` and exit 0 (argparse's own action takes a fixed string)."""

    def __init__(self, option_strings, dest=argparse.SUPPRESS, default=argparse.SUPPRESS, help=None):
        super().__init__(option_strings, dest=dest, default=default, nargs=0, help=help)

    def __call__(self, parser, namespace, values, option_string=None) -> None:
        print(version_text())
        parser.exit(0)


class _Parser(argparse.ArgumentParser):
    """argparse that exits 2 with one line (its default prints usage too, which is fine) and no traceback."""

    def error(self, message: str) -> None:  # pragma: no cover - argparse behaviour
        self.print_usage(sys.stderr)
        self.exit(2, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="protoseg",
        description="Beam / not-beam segmentation of ProtoDUNE-SP events with FC-DenseNet (Tiramisu).",
    )
    parser.add_argument("--version", action=_VersionAction, help="print the protoseg version and the shipped models' versions, then exit")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for name, module_name in COMMANDS.items():
        module = importlib.import_module(module_name)
        sp = sub.add_parser(name, help=module.HELP, description=getattr(module, "DESCRIPTION", module.HELP))
        module.add_arguments(sp)
        sp.set_defaults(_run=module.run)
    return parser


@contextlib.contextmanager
def _sigterm_unwinds() -> Iterator[None]:
    """Turn SIGTERM (Slurm's time limit, ``kill``) into a ``Terminated`` exception while a command runs.

    The default action kills the process on the spot, leaving every temporary output behind; raising
    instead unwinds through ``atomic_output`` as Ctrl-C does. A second SIGTERM during that cleanup is
    ignored. Worker processes are not affected: simulate's are spawned (fresh interpreters, default
    action) and ended by the pool when the exception reaches it. Outside the main thread (a caller
    running ``main`` in a thread) signals cannot be handled and nothing changes.
    """
    received = False

    def handler(signum, frame) -> None:
        nonlocal received
        if not received:
            received = True
            raise Terminated()

    try:
        previous = signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, unknown = parser.parse_known_args(argv)
    if unknown and not getattr(sys.modules.get(COMMANDS.get(args.command or "", ""), None), "ACCEPTS_ANY_ARGUMENTS", False):
        parser.parse_args(argv)  # re-parse strictly: prints argparse's one-line error and exits 2
    if args.command is None:
        parser.print_help()
        return 2
    if args.command in _NETWORK_COMMANDS:
        # Large CPU tensors otherwise page-fault on first write: half of a dense network's CPU training step.
        from protoseg.models import tune_cpu_allocator

        tune_cpu_allocator()
    try:
        with _sigterm_unwinds():
            code = args._run(args)
    except InputError as exc:
        print(f"protoseg {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"protoseg {args.command}: interrupted", file=sys.stderr)
        return 130
    except Terminated:
        print(f"protoseg {args.command}: terminated by SIGTERM, unfinished outputs removed", file=sys.stderr)
        return SIGTERM_EXIT_CODE
    return int(code or 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

"""Command-line interface: ``wine-classifier info`` and ``wine-classifier train``."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

PROG = "wine-classifier"


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Train and evaluate a scikit-learn classifier on the wine data set.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    sub.add_parser("info", help="print the package name and version")

    train = sub.add_parser(
        "train", help="train on the fixed split and print held-out metrics as JSON"
    )
    train.add_argument(
        "--params",
        metavar="JSON",
        default=None,
        help='hyper-parameters as a JSON object, e.g. \'{"estimator": "logistic_regression"}\'',
    )
    train.add_argument(
        "--test-size",
        type=float,
        default=0.25,
        help="fraction of the data held out for evaluation (default: 0.25)",
    )
    return parser


def _error(message: str) -> int:
    print(f"{PROG}: error: {message}", file=sys.stderr)
    return 2


def _parse_params(text: str | None) -> dict:
    if text is None:
        return {}
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"--params is not valid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise ValueError(f"--params must be a JSON object, got {type(value).__name__}")
    return value


def main(argv: Sequence[str] | None = None) -> int:
    parser = _build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse reports usage errors and --help this way
        return exc.code if isinstance(exc.code, int) else 2

    if args.command == "info":
        from . import __version__
        from .record import model_record

        print(f"{PROG} {__version__}")
        record = model_record()
        if record:
            print(
                f"model: {record.get('registered_model')} v{record.get('version')} "
                f"(run {record.get('run_id')})"
            )
        return 0

    from .train import train_and_evaluate

    try:
        params = _parse_params(args.params)
        result = train_and_evaluate(params, test_size=args.test_size)
    except ValueError as exc:
        return _error(str(exc))

    print(json.dumps(result.metrics, indent=2, sort_keys=True))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

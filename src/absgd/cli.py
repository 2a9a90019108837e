"""The ``absgd`` command line.

Exit codes: 0 success, 1 failure, 2 usage error (argparse's convention).
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

import absgd


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="absgd",
        description=(
            "ABSGD: attentional-biased SGD for imbalanced and noisy-label classification "
            "(Qi et al., arXiv 2012.06951)."
        ),
    )
    parser.add_argument("--version", action="version", version=f"absgd {absgd.__version__}")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    parser.parse_args(argv)
    parser.print_help()
    return 0

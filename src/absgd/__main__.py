"""``python -m absgd`` runs the command-line interface."""

from absgd.cli import main

if __name__ == "__main__":
    raise SystemExit(main())

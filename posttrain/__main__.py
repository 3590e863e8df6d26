"""Allows `python -m posttrain` and `accelerate launch -m posttrain`."""

from posttrain.cli import main

if __name__ == "__main__":
    raise SystemExit(main())

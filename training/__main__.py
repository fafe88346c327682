"""Entry point of `python -m spritegen.training`: training (the default), or `distill` (a few-step student)."""

import sys


def main() -> None:
    """`distill ...` runs the distillation command, anything else the trainer's."""
    if len(sys.argv) > 1 and sys.argv[1] == "distill":
        from spritegen.training.distill_cli import app

        sys.argv.pop(1)
        app(prog_name="python -m spritegen.training distill")
    else:
        from spritegen.training.cli import app

        app(prog_name="python -m spritegen.training")


if __name__ == "__main__":
    main()

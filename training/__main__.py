"""Entry point of `python -m spritegen.training`."""

from spritegen.training.cli import app

if __name__ == "__main__":
    app()

"""spritegen.training: procedural sprites and the trainer of the bundled demo checkpoint."""

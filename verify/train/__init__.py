"""Stage 3, train: training on the project's own data, and checkpoints that load without executing code."""

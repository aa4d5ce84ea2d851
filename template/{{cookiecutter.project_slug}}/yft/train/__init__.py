"""Train stage: a small device-agnostic loop (trainer.py) plus hooks for checkpoints,
validation, logging and progress (hooks.py); `run.py` wires them from the Exp."""

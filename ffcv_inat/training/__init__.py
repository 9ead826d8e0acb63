"""Training: the loop (`trainer.py`), `ffcv-train` (`cli.py`) and its synthetic demo (`demo.py`)."""

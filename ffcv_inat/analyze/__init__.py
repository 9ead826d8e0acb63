"""Analysis: run dirs -> the study's table (`table.py`), its figures (`figures.py`), `ffcv-analyze` (`cli.py`)."""

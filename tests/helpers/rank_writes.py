"""`ffcv-train` for torchrun, recording which rank moves which file into place.

Every output of the trainer is renamed into place by ffcv_inat.atomic (os.replace); this
wrapper appends each final path to $RANK_WRITES_DIR/rank<RANK>.txt, then runs the real CLI.
"""

import os
from pathlib import Path

_replace = os.replace


def _recording_replace(src, dst, *args, **kwargs):
    _replace(src, dst, *args, **kwargs)
    with open(Path(os.environ["RANK_WRITES_DIR"]) / f"rank{os.environ.get('RANK', '0')}.txt", "a") as f:
        f.write(f"{dst}\n")


os.replace = _recording_replace

if __name__ == "__main__":
    from ffcv_inat.training.cli import main

    main()

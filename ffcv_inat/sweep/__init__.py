"""The paper's experiment grid: plan it (pure), track its state from files, run it (local / SLURM)."""

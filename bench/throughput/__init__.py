"""Where the bench's throughput figures are made: the loader against its peers and this machine's
ceiling, the model's training step, the trainer end to end, a training run's recorded speed."""

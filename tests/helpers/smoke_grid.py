"""The slice of the smoke grid the session's background sweep runs (tests/conftest.py) and the
end-to-end tests read: one run of each downstream kind, plus what they need (data, ImageNet's
train and val betons with 4 views of them, iNat's 2 betons, 1 pretraining)."""

SMOKE_SLICE = ("finetune_R-8-s0", "linear_R-8-s0", "scratch_s0", "linear_random-s0")


def only_args(ids=SMOKE_SLICE) -> list[str]:
    return [a for i in ids for a in ("--only", i)]

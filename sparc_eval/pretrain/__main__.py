"""``python -m sparc_eval.pretrain --config FILE`` and ``torchrun --nproc-per-node N -m sparc_eval.pretrain ...``:
the ``sparc-eval pretrain`` command on its own."""
from sparc_eval.cli.pretrain import pretrain

if __name__ == "__main__":
    pretrain(prog_name="python -m sparc_eval.pretrain")

"""``python -m sparc_eval`` (and ``torchrun -m sparc_eval``) run the CLI."""
from sparc_eval.cli import main

if __name__ == "__main__":
    main()

"""``python -m fastadapt``: the CLI (what ``torchrun -m fastadapt train CONFIG`` runs on every rank)."""

from .cli import main

if __name__ == "__main__":
    main()

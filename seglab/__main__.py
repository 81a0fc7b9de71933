"""``python -m seglab``: the ``seglab`` command (used by torchrun and SLURM launch scripts)."""

from seglab.cli import entrypoint

if __name__ == "__main__":
    entrypoint()

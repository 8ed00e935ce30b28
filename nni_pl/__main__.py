"""``python -m nni_pl``: the ``nni-pl`` command."""

from nni_pl.cli.main import run

if __name__ == "__main__":
    run()

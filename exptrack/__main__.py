"""``python -m exptrack``: the same command line as the ``exptrack`` script."""

from exptrack.cli import main

if __name__ == "__main__":
    main()

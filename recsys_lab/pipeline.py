"""``python -m recsys_lab.pipeline``: see :mod:`recsys_lab.runners.pipeline`."""

from recsys_lab.runners.pipeline import main

if __name__ == "__main__":
    main()

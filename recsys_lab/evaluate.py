"""``python -m recsys_lab.evaluate``: see :mod:`recsys_lab.runners.evaluate`."""

from recsys_lab.runners.evaluate import main

if __name__ == "__main__":
    main()

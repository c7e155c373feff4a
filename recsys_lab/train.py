"""``python -m recsys_lab.train``: see :mod:`recsys_lab.runners.train`."""

from recsys_lab.runners.train import main

if __name__ == "__main__":
    main()

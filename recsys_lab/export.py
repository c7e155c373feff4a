"""``python -m recsys_lab.export``: see :mod:`recsys_lab.runners.export`."""

from recsys_lab.runners.export import main

if __name__ == "__main__":
    main()

"""``python -m recsys_lab.scaling``: see :mod:`recsys_lab.runners.study`."""

from recsys_lab.runners.study import main

if __name__ == "__main__":
    main()

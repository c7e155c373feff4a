"""``python -m recsys_lab.predict``: see :mod:`recsys_lab.runners.predict`."""

from recsys_lab.runners.predict import main

if __name__ == "__main__":
    main()

"""``python -m recsys_lab.federate``: see :mod:`recsys_lab.runners.federate`."""

from recsys_lab.runners.federate import main

if __name__ == "__main__":
    main()

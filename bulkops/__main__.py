"""`python -m bulkops`: the same command line as the `bulkops` script."""

from bulkops.cli.entry import main

if __name__ == "__main__":
    main()

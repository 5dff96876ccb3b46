#!/usr/bin/env python
"""wsolbench entry point: `python bench.py --help`."""
from wsolbench.cli import main

if __name__ == "__main__":
    main()

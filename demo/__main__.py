"""`python -m demo [options]` is `selfheal demo [options]`."""

import sys

from selfheal.cli import app

app(prog_name="selfheal", args=["demo", *sys.argv[1:]])

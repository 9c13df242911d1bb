"""``python -m deploykit``: the CLI. The supervisor (deploykit.supervisor) runs commands this way
in a child process; run directly, it supervises like the console script."""

import os
import sys

from deploykit.supervisor import CHILD_ENV, child_setup

if __name__ == "__main__":
    from deploykit.cli import main

    if CHILD_ENV in os.environ:  # the supervised child: run the command here
        child_setup()
        main(args=sys.argv[1:], prog_name="deploykit")
    else:
        main(prog_name="deploykit")

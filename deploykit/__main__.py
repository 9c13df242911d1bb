"""``python -m deploykit``: the CLI. The supervisor (deploykit.supervisor) runs commands this way
in a child process; run directly, it supervises like the console script."""

import os
import sys

# ``python -m`` puts the working folder first on sys.path, where a user's random.py or
# tensorrt.py would shadow what deploykit imports: only the SPEC's module is imported from it
# (deploykit.spec.user_import_folders).
if sys.path and sys.path[0] in ("", os.getcwd()):
    sys.path.pop(0)

from deploykit.supervisor import CHILD_ENV, child_setup  # noqa: E402

if __name__ == "__main__":
    from deploykit.cli import main

    if CHILD_ENV in os.environ:  # the supervised child: run the command here
        child_setup()
        main(args=sys.argv[1:], prog_name="deploykit")
    else:
        main(prog_name="deploykit")

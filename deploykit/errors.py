"""The failures a user sees. A UserError becomes one line and exit code 2 in the CLI;
a parity failure is a result (exit code 1), not an exception. Anything else that escapes
is a bug in deploykit and keeps its traceback.
"""


class UserError(Exception):
    """Bad input the user can fix (name, shape, file, backend): exit code 2.

    The message names the problem; ``fix`` says what to do about it.
    """

    exit_code = 2

    def __init__(self, problem: str, fix: str = ""):
        self.problem = problem
        self.fix = fix
        super().__init__(f"{problem}; {fix}" if fix else problem)


class BackendUnavailable(UserError):
    """A backend the user asked for is not installed or cannot run on this machine."""




class BackendRunError(Exception):
    """A backend accepted the inputs but failed while computing: a finding, not a user error."""


def first_line(exc: BaseException, limit: int = 200) -> str:
    """The first line of an exception's message (third-party messages run to pages)."""
    text = str(exc).strip()
    return text.splitlines()[0][:limit] if text else type(exc).__name__

"""The two kinds of failure a user sees, each with its own exit code.

Library code raises these; the CLI turns them into one line and an exit code, never a
traceback. Anything else that escapes is a bug in deploykit and keeps its traceback.
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


class ParityFailure(Exception):
    """A backend's outputs differ from PyTorch beyond tolerance: exit code 1."""

    exit_code = 1

"""Driving the real CLI in-process, as every CLI test does."""

from click.testing import CliRunner

from deploykit.cli import main


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args], prog_name="deploykit")


def assert_user_error(result, *fragments):
    """Exit 2, one line on stderr starting with 'error: ', no traceback, naming each fragment."""
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]

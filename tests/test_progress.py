"""Progress bars: on a terminal only, never with --quiet, never in CI logs."""

from deploykit.progress import progress_bar


def test_no_bar_without_a_terminal(capsys):
    with progress_bar("check") as report:
        assert report is None  # pytest captures stderr: not a terminal
    assert capsys.readouterr().err == ""


def test_a_terminal_gets_a_bar_unless_quiet(monkeypatch, capsys):
    monkeypatch.setenv("FORCE_COLOR", "1")  # rich then treats stderr as a terminal
    with progress_bar("check", quiet=True) as report:
        assert report is None
    assert capsys.readouterr().err == ""
    with progress_bar("check") as report:
        assert report is not None
        report(0, 2, "ort at 1x3x8x8")
        report(2, 2, "done")
    drawn = capsys.readouterr()
    # the last step reported is drawn on stderr (title: step, steps done of all), then erased
    # (the bar is transient); stdout, where tables and JSON go, stays clean
    assert "check: done" in drawn.err and "2/2" in drawn.err
    assert "\x1b[2K" in drawn.err.rsplit("2/2", 1)[1] and drawn.out == ""  # erase line, after the last draw

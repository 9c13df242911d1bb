"""Logging: deploykit's steps with -v, the exporter's loggers captured (not the process's)."""

import io
import logging

from deploykit.logs import captured_exporter_logs, configure
from tests.cli_helpers import run


def test_verbose_shows_deploykit_steps_on_stderr_and_the_default_does_not(tmp_path):
    quiet = run("export", "pool", "--shape", "1x16x8x8", "-o", tmp_path / "a.onnx")
    assert quiet.exit_code == 0, quiet.output
    assert "deploykit: exporting" not in quiet.stderr
    verbose = run("-v", "export", "pool", "--shape", "1x16x8x8", "-o", tmp_path / "b.onnx")
    assert verbose.exit_code == 0, verbose.output
    assert "deploykit: exporting pool traced at 1x16x8x8" in verbose.stderr
    assert "deploykit: verifying the graph at 1x16x8x8, 2x16x9x9" in verbose.stderr


def test_the_exporters_loggers_go_to_the_sink_and_other_loggers_are_untouched(capsys):
    configure(0)
    exporter = logging.getLogger("torch.onnx._internal.exporter._compat")
    users = logging.getLogger("a_users_model")
    users.addHandler(logging.StreamHandler())  # writes to the stderr capsys captures
    sink = io.StringIO()
    before = (logging.getLogger("torch.onnx").handlers[:], logging.getLogger("torch.onnx").propagate)
    with captured_exporter_logs(sink):
        exporter.warning("opset converted")
        users.warning("the user's own warning")
    assert "opset converted" in sink.getvalue()
    assert "the user's own warning" not in sink.getvalue()
    err = capsys.readouterr().err
    assert "the user's own warning" in err and "opset converted" not in err
    assert (logging.getLogger("torch.onnx").handlers, logging.getLogger("torch.onnx").propagate) == before


def test_very_verbose_lets_the_exporter_log_reach_the_terminal_too():
    shown = io.StringIO()
    torch_onnx = logging.getLogger("torch.onnx")
    own = logging.StreamHandler(shown)
    torch_onnx.addHandler(own)
    try:
        configure(2)
        sink = io.StringIO()
        with captured_exporter_logs(sink):
            logging.getLogger("torch.onnx.something").warning("converter fallback")
        assert "converter fallback" in sink.getvalue() and "converter fallback" in shown.getvalue()
        configure(0)
        with captured_exporter_logs(io.StringIO()):
            logging.getLogger("torch.onnx.something").warning("hidden")
        assert "hidden" not in shown.getvalue()
    finally:
        torch_onnx.removeHandler(own)
        configure(0)

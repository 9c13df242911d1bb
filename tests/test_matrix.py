from deploykit.matrix import MatrixRow, markdown


def test_markdown_rows_say_what_failed():
    rows = [MatrixRow("pool", "defaults", True, 17, True, 0.0),
            MatrixRow("interpolate", "antialias=True", True, 18, False, 0.96),
            MatrixRow("x", "defaults", False, None, None, None, "export of x failed")]
    text = markdown(rows).splitlines()
    assert text[2] == "| pool | defaults | yes, opset 17 | pass | 0.0e+00 |"
    assert text[3].endswith("| yes, opset 18 | FAIL | 9.6e-01 |")
    assert text[4] == "| x | defaults | no: export of x failed | - | - |"

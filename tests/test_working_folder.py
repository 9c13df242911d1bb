"""python -m deploykit puts the working folder first on sys.path: only the SPEC's module may be
imported from it, never a file that shadows what deploykit imports."""

import subprocess
import sys
import textwrap


def _deploykit(folder, *args):
    return subprocess.run([sys.executable, "-m", "deploykit", *map(str, args)], cwd=folder,
                          capture_output=True, text=True, timeout=600)


def test_files_in_the_working_folder_shadow_nothing_but_the_spec_is_found(tmp_path):
    (tmp_path / "random.py").write_text("raise RuntimeError('the working folder shadowed random')\n")
    (tmp_path / "tensorrt.py").write_text("raise RuntimeError('the working folder shadowed tensorrt')\n")
    (tmp_path / "my_net.py").write_text(textwrap.dedent("""
        import torch

        def build():
            return torch.nn.Conv2d(3, 4, 3, padding=1)
    """))
    exported = _deploykit(tmp_path, "export", "my_net:build", "--shape", "1x3x8x8", "-o", "n.onnx", "--no-verify")
    assert exported.returncode == 0, exported.stderr
    linted = _deploykit(tmp_path, "lint", "n.onnx", "--target", "trt")
    assert linted.returncode == 0 and "shadowed" not in linted.stderr, linted.stderr
    checked = _deploykit(tmp_path, "check", "my_net:build", "--onnx", "n.onnx", "--shape", "1x3x8x8",
                         "--backends", "torch,ort,trt")
    assert checked.returncode == 0 and "shadowed" not in checked.stdout + checked.stderr, checked.stderr

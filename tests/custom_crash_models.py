"""Models that kill the interpreter, as a native crash in a user's model or a library would:
SPEC = tests.custom_crash_models:segfaults."""

import ctypes
import os
import signal

from torch import nn


class _Segfaults(nn.Module):
    """Reads address 0 in forward: a segmentation fault, under the exporter or in eager mode."""

    def forward(self, x):
        ctypes.string_at(0)
        return x


class _Aborts(nn.Module):
    def forward(self, x):
        os.abort()


class _KillsItself(nn.Module):
    """SIGKILL, as the kernel's out-of-memory killer sends: no stack can be written."""

    def forward(self, x):
        os.kill(os.getpid(), signal.SIGKILL)


class _SegfaultsWhenExported(nn.Module):
    """Runs in eager mode, segfaults only while PyTorch's exporter traces it (as one real
    super-resolution network crashes torch.onnx.export)."""

    def forward(self, x):
        import torch

        if torch.compiler.is_exporting():
            ctypes.string_at(0)
        return x * 2


def segfaults_in_export():
    return _SegfaultsWhenExported()


def segfaults():
    return _Segfaults()


def aborts():
    return _Aborts()


def killed():
    return _KillsItself()

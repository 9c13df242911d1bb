"""A user's own model, loaded through SPEC = tests.custom_models:tiny_decoder."""

from torch import nn


def tiny_decoder(channels=8, scale=2):
    return nn.Sequential(nn.Conv2d(channels, channels * scale * scale, 3, padding=1), nn.PixelShuffle(scale))


def not_a_module():
    return 42


def flagged(flag=True, channels=4):
    """Records what -p flag=... became, to check callable parameter parsing."""
    module = nn.Identity()
    module.flag = flag
    return module


def strict_input():
    class Strict(nn.Module):
        def forward(self, x):
            assert x.shape[1] == 3, "expects RGB"
            return x

    return Strict()


def raises_value_error():
    raise ValueError("bad k")


def out_of_memory():
    """Fails as PyTorch's CPU allocator does when the machine has no memory left."""

    class Hungry(nn.Module):
        def forward(self, x):
            raise RuntimeError("[enforce fail at alloc_cpu.cpp:117] data. DefaultCPUAllocator: can't allocate memory: "
                               "you tried to allocate 7700000000 bytes. Error code 12 (Cannot allocate memory)")

    return Hungry()


def marked_up(channels=4):
    """Raises an error whose text is rich markup, as a third-party message may be."""

    class Loud(nn.Module):
        def forward(self, x):
            if x.shape[1] != channels:
                raise ValueError("[/] expects [bold]channels[/bold] :smile: [link=x]")
            return x

    return Loud()

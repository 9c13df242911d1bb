"""TensorRT's loader: the engine build (``deploykit build``, and the trt runner when it is given
no engine), optimization profiles, and plugin libraries.

Written against TensorRT's Python API, 10.x and 11.x; the runner that executes an engine is
deploykit.backends.trt. Precision: engines are built from the types in the graph (strongly
typed), the only mode TensorRT 11 has. ``fp16=True`` asks TensorRT 10 for FP16 kernels with
the builder flag; on 11, which removed the flag, export an fp16 graph instead (``deploykit
export --precision fp16``).
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass, field
from pathlib import Path

from deploykit.errors import BackendUnavailable, UserError, first_line
from deploykit.files import atomic_path


def tensorrt_module():
    """Import TensorRT or say what is missing."""
    if importlib.util.find_spec("tensorrt") is None:
        raise BackendUnavailable("TensorRT is not installed",
                                 "pip install tensorrt on a machine with an NVIDIA GPU (its builder library "
                                 "is not on every package index)")
    try:
        import tensorrt as trt
    except (ImportError, OSError) as exc:
        raise BackendUnavailable(f"TensorRT is installed but cannot load ({first_line(exc, 120)})",
                                 "install the TensorRT runtime (libnvinfer) matching the Python package") from None
    return trt


def require_gpu() -> None:
    import torch

    if not torch.cuda.is_available():
        raise BackendUnavailable("TensorRT needs a CUDA GPU and a CUDA build of PyTorch; none is available here",
                                 "run the trt backend on a GPU machine")


class TrtLogger:
    """TensorRT's messages at WARNING and above, kept so errors can be reported in one line."""

    def __init__(self, trt):
        class Logger(trt.ILogger):
            def __init__(self):
                trt.ILogger.__init__(self)
                self.errors: list[str] = []

            def log(self, severity, msg):
                if severity <= trt.ILogger.Severity.ERROR:  # warnings often follow the error that matters
                    self.errors.append(msg)

        self.logger = Logger()

    def last_error(self) -> str:
        return self.logger.errors[-1] if self.logger.errors else "no error message from TensorRT"


class PluginLibraries:
    """The plugin libraries one process has loaded into TensorRT, and TensorRT's own plugins
    readied once (``PROCESS_PLUGINS`` is the process's; a test makes a fresh one)."""

    def __init__(self) -> None:
        self.loaded: set[str] = set()
        # The logger for TensorRT's own plugin library, created once and kept as long as this
        # object: init_libnvinfer_plugins keeps only the raw pointer, so a temporary logger
        # would leave the plugins logging into freed memory.
        self.builtin_logger = None

    def load(self, trt, plugins: list[Path]) -> None:
        """Load plugin libraries before parsing or deserializing.

        Each library is dlopen'ed first, which names a library that cannot load at all and
        readies one that registers its creators when loaded. One that exports getCreators (or the
        older getPluginCreators) then also goes through IPluginRegistry.load_library: only that
        route hands the library TensorRT's logger finder, through which the plugin's errors reach
        the builder's or runtime's logger, the one deploykit reports from. deploykit's own library
        takes its load-time registration back when load_library asks for its creators
        (plugins/dysample/trt_registration.h), so load_library accepts it; a third-party library
        that registered on load and is then refused still has its creators registered.
        """
        import ctypes

        if self.builtin_logger is None:  # TensorRT's own plugins, e.g. ROIAlign_TRT behind ONNX RoiAlign
            self.builtin_logger = trt.Logger(trt.Logger.ERROR)
            trt.init_libnvinfer_plugins(self.builtin_logger, "")
        registry = trt.get_plugin_registry()
        for plugin in plugins:
            if not Path(plugin).is_file():
                raise UserError(f"plugin library {plugin} not found", "build it: cmake -S plugins -B build (see README)")
            path = str(Path(plugin).resolve())
            if path in self.loaded:  # load_library refuses creators already registered
                continue
            before = len(registry.all_creators or [])
            try:
                library = ctypes.CDLL(path, mode=ctypes.RTLD_GLOBAL)
            except OSError as exc:
                raise UserError(f"cannot load plugin library {plugin}: {first_line(exc, 160)}",
                                "rebuild it against this TensorRT and CUDA") from None
            registered_on_load = len(registry.all_creators or []) > before
            if hasattr(library, "getCreators") or hasattr(library, "getPluginCreators"):
                if registry.load_library(path) is None and not registered_on_load:
                    raise UserError(f"TensorRT could not register the plugins of {plugin}",
                                    "rebuild it against this TensorRT version")
            self.loaded.add(path)


PROCESS_PLUGINS = PluginLibraries()


def load_plugins(trt, plugins: list[Path]) -> None:
    """``PluginLibraries.load`` for this process."""
    PROCESS_PLUGINS.load(trt, plugins)


@dataclass
class Profile:
    """min/opt/max shape of one engine input."""

    min: tuple[int, ...]
    opt: tuple[int, ...]
    max: tuple[int, ...]


def profile_from_shapes(shapes: list[tuple[int, ...]], opt: tuple[int, ...] | None = None) -> Profile:
    """Cover every shape a check or bench will run: elementwise min and max, opt the first."""
    return Profile(min=tuple(map(min, zip(*shapes))), opt=opt or shapes[0], max=tuple(map(max, zip(*shapes))))


def profiles_from_cases(cases: list, names: list[str]) -> dict[str, Profile]:
    """A profile for every input, covering every test case a check or bench will run (a case of
    several inputs is a Case of (name, shape) pairs: each input gets its own min/opt/max)."""
    from deploykit.model_io import case_shapes

    by_input = [case_shapes(case, names) for case in cases]
    return {name: profile_from_shapes([shapes[name] for shapes in by_input]) for name in names}


def default_profile(traced: tuple[int, ...]) -> Profile:
    """From the export's traced shape: batch 1..max(4, 2B), spatial sizes from a quarter to 4x."""
    batch, channels, spatial = traced[0], tuple(traced[1:2]), tuple(traced[2:])  # ids and vectors too
    return Profile(min=(1, *channels, *(max(1, s // 4) for s in spatial)), opt=tuple(traced),
                   max=(max(4, 2 * batch), *channels, *(4 * s for s in spatial)))


@dataclass
class BuildResult:
    engine_path: Path
    profiles: dict[str, Profile] = field(default_factory=dict)
    tensorrt: str = ""
    precision: str = "fp32"


def build_engine(onnx_path: Path, engine_path: Path, *, fp16: bool = False, tf32: bool = False,
                 plugins: list[Path] | None = None, profiles: dict[str, Profile] | None = None,
                 timing_cache: Path | None = None, workspace_mb: int | None = None, force: bool = False) -> BuildResult:
    """Parse ``onnx_path`` (plugins loaded first) and write a serialized engine atomically."""
    trt = tensorrt_module()
    require_gpu()
    log = TrtLogger(trt)
    load_plugins(trt, plugins or [])
    builder = trt.Builder(log.logger)
    weak_fp16 = fp16 and hasattr(trt.BuilderFlag, "FP16")
    if fp16 and not weak_fp16:
        raise UserError(f"TensorRT {trt.__version__} has no FP16 builder flag (strong typing only)",
                        "export an fp16 graph (deploykit export --precision fp16) and build that")
    flags = 0 if weak_fp16 else 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, log.logger)
    if not parser.parse_from_file(str(onnx_path)):
        raise UserError(_parser_errors(parser), "run 'deploykit lint' on the model for the likely cause")
    config = builder.create_builder_config()
    if weak_fp16:
        config.set_flag(trt.BuilderFlag.FP16)
    if not tf32 and hasattr(trt.BuilderFlag, "TF32"):
        # On by default: fp32 convolutions would round inputs to 10 mantissa bits and miss
        # the fp32 parity tolerance by orders of magnitude.
        config.clear_flag(trt.BuilderFlag.TF32)
    if workspace_mb:
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace_mb << 20)
    profiles = profiles or _profiles_from_graph(network, onnx_path)
    profile = builder.create_optimization_profile()
    for i in range(network.num_inputs):
        name = network.get_input(i).name
        if name not in profiles:
            raise UserError(f"no shapes for engine input {name!r}", f"pass --profile {name}=MIN/OPT/MAX")
        try:
            profile.set_shape(name, profiles[name].min, profiles[name].opt, profiles[name].max)
        except RuntimeError as exc:
            raise UserError(f"profile for {name!r} does not fit the network's input "
                            f"{tuple(network.get_input(i).shape)}: {first_line(exc)}",
                            "fix --profile (rank and fixed dims must match)") from None
    if config.add_optimization_profile(profile) < 0:
        raise UserError(f"TensorRT rejected the optimization profile: {log.last_error()}", "fix --profile")
    cache = None
    if timing_cache is not None:
        cache = config.create_timing_cache(Path(timing_cache).read_bytes() if Path(timing_cache).is_file() else b"")
        if cache is None:
            raise UserError(f"timing cache {timing_cache} is corrupt or from another TensorRT",
                            "delete it (a new one is written after the build)")
        config.set_timing_cache(cache, ignore_mismatch=False)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise UserError(f"TensorRT could not build an engine from {onnx_path}: {log.last_error()}",
                        "run 'deploykit lint' on the model, or raise --workspace")
    with atomic_path(Path(engine_path), force) as tmp:
        tmp.write_bytes(bytes(serialized))
    if cache is not None:
        with atomic_path(Path(timing_cache), force=True) as tmp:
            tmp.write_bytes(bytes(config.get_timing_cache().serialize()))
    return BuildResult(Path(engine_path), profiles, trt.__version__, "fp16" if fp16 else "as in the graph")


def _parser_errors(parser) -> str:
    """Each parser error with the failing node's name and op type (TensorRT 10+ reports both)."""
    parts = []
    for i in range(parser.num_errors):
        error = parser.get_error(i)
        node_name = error.node_name() if hasattr(error, "node_name") else f"#{error.node()}"
        operator = error.node_operator() if hasattr(error, "node_operator") else "?"
        parts.append(f"node {node_name} ({operator}): {error.desc()}")
    return "TensorRT's ONNX parser failed: " + "; ".join(parts or ["no error reported"])


def _profiles_from_graph(network, onnx_path: Path) -> dict[str, Profile]:
    """Defaults from the export: deploykit records the traced shape in the ONNX metadata, and
    the bounds the trace holds dims to."""
    import onnx

    from deploykit.onnx_file import recorded_ranges

    metadata = {p.key: p.value for p in onnx.load(str(onnx_path), load_external_data=False).metadata_props}
    traced = traced_case_by_input(metadata.get("deploykit.traced_shape") or "",
                              [network.get_input(i).name for i in range(network.num_inputs)])
    profiles = {}
    for i in range(network.num_inputs):
        tensor = network.get_input(i)
        dims = tuple(tensor.shape)
        if all(d > 0 for d in dims):
            profiles[tensor.name] = Profile(dims, dims, dims)
        elif tensor.name in traced:
            profiles[tensor.name] = within_bounds(default_profile(traced[tensor.name]), tensor.name,
                                                  recorded_ranges(metadata))
    return profiles


def within_bounds(profile: Profile, name: str, ranges) -> Profile:
    """The profile clamped to the bounds the export's trace holds the input's dims to
    (deploykit.export.guards): an engine must not promise shapes the graph is wrong at."""
    low, opt, high = list(profile.min), list(profile.opt), list(profile.max)
    for bound in ranges:
        if bound.input != name or bound.axis >= len(low):
            continue
        top = bound.high if bound.high is not None else high[bound.axis]
        low[bound.axis] = min(max(low[bound.axis], bound.low), top)
        high[bound.axis] = max(min(high[bound.axis], top), low[bound.axis])
        opt[bound.axis] = min(max(opt[bound.axis], low[bound.axis]), high[bound.axis])
    return Profile(tuple(low), tuple(opt), tuple(high))


def traced_case_by_input(text: str, names: list[str]) -> dict[str, tuple[int, ...]]:
    """The recorded traced case by input: '2x64x37x45' is the one input's, 'a=...,b=...' names
    each (deploykit.model_io); unreadable metadata gives no defaults (--profile then)."""
    from deploykit.model_io import parse_case

    try:
        case = parse_case(text, names) if text else None
    except UserError:
        return {}
    if case is None:
        return {}
    return dict(case) if len(names) > 1 else {names[0]: tuple(case)}


def parse_profile(text: str) -> tuple[str, Profile]:
    """'input=1x64x16x16/2x64x64x64/4x64x128x128' -> ('input', Profile(...))."""
    from deploykit.model_io import parse_shape

    name, sep, spec = text.partition("=")
    parts = spec.split("/")
    if not sep or not name or len(parts) != 3:
        raise UserError(f"malformed --profile {text!r}",
                        "write NAME=MIN/OPT/MAX, e.g. input=1x64x16x16/2x64x64x64/4x64x128x128")
    low, opt, high = (parse_shape(p) for p in parts)
    if not (len(low) == len(opt) == len(high)) or any(not a <= b <= c for a, b, c in zip(low, opt, high)):
        raise UserError(f"--profile {text!r} is not ordered min <= opt <= max in every dim", "fix the shapes")
    return name, Profile(low, opt, high)

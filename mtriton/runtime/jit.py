"""`@jit` and `kernel[grid](...)`: specialization, compile caches and launch.

A launch binds the arguments, specializes (constexpr values, argument dtypes,
integers equal to 1 or divisible by 16, as Triton does), finds or builds the
compiled kernel (in memory, then the on-disk IR cache, then the frontend),
runs it on the selected backend and makes what it wrote visible through the
caller's arrays (`a[...] = new`, which MLX does without a copy).
"""

from __future__ import annotations

import contextlib
import inspect
import operator
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any

import mlx.core as mx

from .. import backends, cache, ir, options
from ..dtypes import MX_TO_IR
from ..errors import CompilationError, LaunchError, LaunchOverflowError, LaunchTypeError, MTritonError
from ..frontend import ArgSpec, build_ir
from ..ir import types as T
from ..ir.parser import ParseError, parse_function
from ..ir.printer import print_function
from ..language.core import constexpr
from ..language.source import JITSource
from ..options import DEFAULT_LAUNCH, LAUNCH_OPTIONS, LaunchOptions, launch_options
from ..passes import run_pipeline
from .reinterpret import Reinterpreted

# programs along each grid axis: CUDA's limits (2^31 - 1 blocks on x, 65535 on y and z)
MAX_GRID = (2**31 - 1, 65535, 65535)


def normalize_grid(grid: Any, meta: dict[str, Any]) -> tuple[int, int, int]:
    """`grid` (a tuple or a callable of the meta-parameters) as three non-negative ints."""
    if callable(grid):
        grid = grid(meta)
    if isinstance(grid, int):
        grid = (grid,)
    if type(grid) is tuple and len(grid) == 1 and type(grid[0]) is int and 0 <= grid[0] <= MAX_GRID[0]:
        return (grid[0], 1, 1)  # the common case, without the general checks (dispatch cost)
    try:
        dims = [operator.index(g) for g in grid]  # ints only: a float such as 3.9 is an error
    except TypeError:
        raise LaunchError(f"grid must be a tuple of up to 3 ints (or return one), got {grid!r}") from None
    if not 1 <= len(dims) <= 3 or any(d < 0 for d in dims):
        raise LaunchError(f"grid must be 1 to 3 non-negative ints, got {tuple(dims)}")
    for axis, (d, limit) in enumerate(zip(dims, MAX_GRID)):
        if d > limit:
            raise LaunchError(
                f"grid has {d} programs along axis {axis}; at most {limit} fit (CUDA's and Metal's limit)"
            )
    return tuple(dims + [1] * (3 - len(dims)))  # type: ignore[return-value]


# The arrays launches wrote while `recording_writes` is active (None: not recording).
_write_log: list[mx.array] | None = None


@contextlib.contextmanager
def recording_writes() -> Iterator[list[mx.array]]:
    """Collects every array a launch writes in place inside the block, so that a caller that
    only has a function to run (`mtriton.testing.do_bench`) can evaluate MLX's lazy results."""
    global _write_log
    outer, _write_log = _write_log, []
    try:
        yield _write_log
    finally:
        if outer is not None:
            outer.extend(_write_log)
        _write_log = outer


class CompiledEntry:
    """One specialization in a kernel's in-memory cache.

    Attributes:
        kernel: What the backend compiled, called with the runtime arguments and the grid.
        fn: The IR it was compiled from.
        specs: How each argument was specialized.
        options: The launch options it was compiled for.
        name: The kernel's name and specialization, as errors name it.
        asm: The code of every stage, by name, made when first read (Triton's `.asm`):
            "ir" (the block IR), "metal" and "cuda" (the source MLX receives, whole).
    """

    def __init__(
        self, kernel: Any, fn: ir.Function, specs: Sequence[ArgSpec], options: LaunchOptions, name: str
    ) -> None:
        self.kernel = kernel
        self.fn = fn
        self.specs = list(specs)
        self.options = options
        self.name = name
        self.runtime_names = [s.name for s in specs if s.kind != "constexpr"]
        # whether some runtime argument is a `mtriton.reinterpret` view: the cache key tells
        # them from arrays, so it holds for every launch that finds this entry
        self.reinterpreted = False
        self.asm = _Stages(fn, options)


class _Stages(Mapping[str, str]):
    """`CompiledEntry.asm`: each stage's code generated on first access."""

    STAGES = ("ir", "metal", "cuda")

    def __init__(self, fn: ir.Function, options: LaunchOptions) -> None:
        self.fn = fn
        self.options = options
        self.made: dict[str, str] = {}

    def __getitem__(self, stage: str) -> str:
        if stage not in self.made:
            if stage == "ir":
                self.made[stage] = print_function(self.fn)
            elif stage in self.STAGES:
                # imported here: the lowering loads only when someone reads a stage (~30 ms)
                from ..backends.dump import source_dump

                self.made[stage] = source_dump(stage, self.fn, self.options, full=True)
            else:
                raise KeyError(f"no stage {stage!r}; the stages are {', '.join(self.STAGES)}")
        return self.made[stage]

    def __iter__(self) -> Iterator[str]:
        return iter(self.STAGES)

    def __len__(self) -> int:
        return len(self.STAGES)


class KernelLauncher:
    """`kernel[grid]`: call it to launch in place, or `.functional(...)` for new arrays."""

    def __init__(self, kernel: JITFunction, grid: Any) -> None:
        self.kernel = kernel
        self.grid = grid

    def __call__(self, *args: Any, **kwargs: Any) -> None:
        if isinstance(self.kernel, JITFunction):  # without repacking the arguments for `run`
            self.kernel.launch(args, kwargs, self.grid)
        else:  # an autotuner or heuristics
            self.kernel.run(*args, grid=self.grid, **kwargs)

    def functional(self, *args: Any, **kwargs: Any) -> tuple[mx.array, ...]:
        """Launches without touching the arguments.

        Returns:
            The new contents of every pointer argument the kernel writes, in
            parameter order (the inputs keep their values).
        """
        return self.kernel.run(*args, grid=self.grid, _functional=True, **kwargs)

    def warmup(self, *args: Any, **kwargs: Any) -> CompiledEntry:
        """Compiles for these arguments without launching (Triton's `kernel.warmup`).

        Returns:
            The compiled specialization: `.asm["ir"]`, `.asm["metal"]`, `.asm["cuda"]` hold the
            code of each stage, as Triton's `.asm["ttir"]` does.
        """
        entry, _, _ = self.kernel.lookup(args, kwargs, self.grid)
        return entry

    def raw(self, *args: Any, **kwargs: Any) -> Callable[[], Any]:
        """Compiles for these arguments and returns the backend's own launch, bound to them.

        Calling the result runs the compiled kernel on the same arrays again (on GPUs, the
        `mx.fast.metal_kernel`/`cuda_kernel` call with its inputs already built) and returns
        the backend's outputs, bypassing mtriton's argument binding, cache lookup and
        write-back. Benchmarks compare it with `kernel[grid](...)` to measure that dispatch.
        """
        entry, runtime, grid3 = self.kernel.lookup(args, kwargs, self.grid)
        prepare = getattr(entry.kernel, "prepare", None)
        if prepare is not None:
            return prepare(runtime, grid3)
        return lambda: entry.kernel(runtime, grid3)


class JITFunction(JITSource):
    """A Python function compiled as a kernel. Create it with `@mtriton.jit`."""

    def __init__(self, fn: Callable[..., Any], do_not_specialize: Iterable[Any] = ()) -> None:
        super().__init__(fn)
        self._defaults = {p.name: p.default for p in self.signature.parameters.values()}
        self.do_not_specialize = {self.arg_names[d] if isinstance(d, int) else d for d in do_not_specialize}
        self.cache: dict[Any, Any] = {}
        self._param_set = frozenset(self.arg_names)
        # Launch options by name, where no kernel parameter has that name (the kernel's wins).
        self._option_names = {
            k: i for i, k in enumerate(LAUNCH_OPTIONS) if k not in self.signature.parameters
        }
        # the runtime parameters specialized on their values (`_launch_key`'s fast cases)
        self._specialized = {
            n for n in self.arg_names if n not in self.constexpr_names
        } - self.do_not_specialize

    def __getitem__(self, grid: Any) -> KernelLauncher:
        return KernelLauncher(self, grid)

    def warmup(self, *args: Any, grid: Any, **kwargs: Any) -> CompiledEntry:
        """`kernel[grid].warmup(*args, **kwargs)`, as Triton spells it: compiles, launches nothing."""
        return KernelLauncher(self, grid).warmup(*args, **kwargs)

    def cache_key(self) -> str:
        """`JITSource.cache_key`; compiled kernels are dropped when a dependency changed. Each
        launch checks the dependencies once (the key's own check runs only after a change)."""
        if self.deps_changed():
            self.cache.clear()
            return super().cache_key()
        return self._deps_key  # type: ignore[return-value]

    # ------------------------------------------------------------------ launch

    def specialize(self, name: str, value: Any, backend: str) -> ArgSpec:
        if name in self.constexpr_names or value is None or isinstance(value, (constexpr, T.DType, str)):
            value = value.value if isinstance(value, constexpr) else value
            return ArgSpec(name, "constexpr", value=value)
        if isinstance(value, (mx.array, Reinterpreted)):
            dtype = value.dtype if isinstance(value, Reinterpreted) else MX_TO_IR.get(value.dtype)
            if dtype is None:
                raise LaunchError(f"argument {name}: dtype {value.dtype} is not supported by kernels")
            if dtype == T.float64 and backend != "interpreter":
                raise LaunchError(
                    f"argument {name}: float64 runs only on the interpreter; backend {backend!r} has no float64"
                )
            return ArgSpec.pointer(name, dtype)
        if isinstance(value, bool):
            return ArgSpec.scalar(name, T.int1)
        if isinstance(value, int):
            dtype = _int_dtype(name, value)
            if name in self.do_not_specialize:
                return ArgSpec.scalar(name, dtype)
            return ArgSpec.scalar(name, dtype, one=value == 1, divisible_by_16=value % 16 == 0)
        if isinstance(value, float):
            return ArgSpec.scalar(name, T.float32)
        raise LaunchError(
            f"argument {name}: expected an mx.array, a number, a dtype or None, got {type(value).__name__}"
        )

    def bind(self, args: Sequence[Any], kwargs: dict[str, Any]) -> tuple[dict[str, Any], LaunchOptions]:
        """Splits a call into (arguments by name, in parameter order, with defaults; launch options).

        Written out rather than `inspect.Signature.bind`, which costs more than the rest of a
        cached launch; the common call (every argument given, positionally or by keyword, in
        order) builds one dictionary.
        """
        opts = DEFAULT_LAUNCH
        names = self.arg_names
        if len(args) > len(names):
            raise LaunchTypeError(
                f"{self.__name__}: too many positional arguments: takes {len(names)}, got {len(args)}"
            )
        named = dict(zip(names, args))
        if kwargs:
            option_names = self._option_names
            given_opts = None
            for key, value in kwargs.items():
                if key in option_names:
                    given_opts = [] if given_opts is None else given_opts
                    given_opts.append((option_names[key], key, value))
                elif key in named:
                    raise LaunchTypeError(f"{self.__name__}: got multiple values for argument {key!r}")
                elif key not in self._param_set:
                    raise LaunchTypeError(f"{self.__name__}: got an unexpected keyword argument {key!r}")
                else:
                    named[key] = value
            if given_opts is not None:
                opts = launch_options(tuple((key, value) for _, key, value in sorted(given_opts)))
        if len(named) == len(names) and (not kwargs or list(named) == names):
            return named, opts
        ordered = {}
        for name in names:
            if name in named:
                ordered[name] = named[name]
            elif self._defaults[name] is not inspect.Parameter.empty:
                ordered[name] = self._defaults[name]
            else:
                raise LaunchTypeError(f"{self.__name__}: missing a required argument: {name!r}")
        return ordered, opts

    def _arg_key(self, name: str, value: Any) -> Any:
        """A cheap hashable key that determines `specialize(name, value)`."""
        kind = type(value)
        if name not in self.constexpr_names:
            if kind is mx.array:
                return value.dtype
            if kind is int:
                width = T.int32 if -(2**31) <= value < 2**31 else _int_dtype(name, value)
                if name in self.do_not_specialize:
                    return ("i", width)
                return ("i", width, value == 1, value % 16 == 0)
            if kind is float:
                return float
            if kind is Reinterpreted:
                return ("r", value.base.dtype, value.dtype)
        value = value.value if isinstance(value, constexpr) else value
        if isinstance(value, JITSource):  # a combine function, say: its source and dependencies
            return ("jit", value.cache_key())
        try:
            hash(value)
            return ("c", type(value), value)
        except TypeError:
            return ("c", repr(value))

    def _launch_key(self, named: dict[str, Any]) -> tuple[Any, ...]:
        """`_arg_key` of every argument, with the common cases (arrays, int32 scalars, int
        constexprs) written inline, without a method call each: this runs on every launch."""
        specialized, constexprs, arg_key = self._specialized, self.constexpr_names, self._arg_key
        keys = []
        for name, value in named.items():
            kind = type(value)
            if name in specialized:
                if kind is mx.array:
                    keys.append(value.dtype)
                    continue
                if kind is int and -(2**31) <= value < 2**31:
                    keys.append(("i", T.int32, value == 1, value % 16 == 0))
                    continue
            elif kind is int and name in constexprs:
                keys.append(("c", int, value))
                continue
            keys.append(arg_key(name, value))
        return tuple(keys)

    def lookup(
        self, args: Sequence[Any], kwargs: dict[str, Any], grid: Any
    ) -> tuple[CompiledEntry, list[Any], tuple[int, int, int]]:
        """The compiled specialization for a launch (compiling it on a miss), the runtime
        arguments it takes and the grid."""
        named, opts = self.bind(args, kwargs)
        grid3 = normalize_grid(grid, {**named, **opts.as_dict()} if callable(grid) else named)
        env = options.launch_env()
        backend_name = backends.current_backend_name(env)
        # env[2:]: the knobs that change generated source (MTRITON_CUDA_ARCH, MTRITON_WGMMA), raw,
        # so that setting one mid-process reaches the next launch
        key = (self.cache_key(), self._launch_key(named), backend_name, opts, env[2:])
        entry = self.cache.get(key)
        if entry is None:
            specs = [self.specialize(n, v, backend_name) for n, v in named.items()]
            backend = backends.get_backend(backend_name)
            fn = self.compile_ir(specs, backend_name)
            _warn_ignored_options(backend, opts, fn)
            try:
                kernel = backend.compile(fn, opts)
            except CompilationError as err:
                raise err.with_kernel(self.describe(specs)) from err.__cause__
            entry = CompiledEntry(kernel, fn, specs, opts, self.describe(specs))
            entry.reinterpreted = any(type(named[n]) is Reinterpreted for n in entry.runtime_names)
            self.cache[key] = entry
        # a reinterpreted array reaches the backend as its array (the parameter's type says how
        # to read it), and the launch writes into that array
        runtime = [named[n] for n in entry.runtime_names]
        if entry.reinterpreted:
            runtime = [v.base if type(v) is Reinterpreted else v for v in runtime]
        return entry, runtime, grid3

    def run(self, *args: Any, grid: Any, _functional: bool = False, **kwargs: Any) -> Any:
        """Launches with Triton's `kernel.run(*args, grid=...)` spelling; `_functional` returns
        the new contents instead of writing them into the arguments."""
        return self.launch(args, kwargs, grid, _functional)

    def launch(self, args: Sequence[Any], kwargs: dict[str, Any], grid: Any, functional: bool = False) -> Any:
        """`kernel[grid](*args, **kwargs)` (`functional`: see `KernelLauncher.functional`)."""
        try:
            entry, runtime, grid3 = self.lookup(args, kwargs, grid)
            if grid3[0] * grid3[1] * grid3[2] == 0:
                outputs: list[Any] = [None] * len(runtime)
            else:
                outputs = entry.kernel(runtime, grid3)
        except MTritonError as err:
            if options.debug():
                raise
            raise err.with_traceback(None) from None
        if functional:
            return tuple(out for out in outputs if out is not None)
        for arg, out in zip(runtime, outputs):
            if out is not None:
                arg[...] = out
                if _write_log is not None:
                    _write_log.append(arg)
        return None

    def compile_ir(self, specs: Sequence[Any], backend: str) -> ir.Function:
        """Frontend and passes for one specialization, through the on-disk IR cache (the IR does
        not depend on the launch options: the backend gets them with it)."""
        # a @jit function passed as a constexpr is keyed by what it computes, not by its name
        spec_key = [
            (s.name, "jit", s.value.cache_key()) if isinstance(s.value, JITSource) else s for s in specs
        ]
        disk_key = cache.key_hash(self.cache_key(), spec_key, backend)
        text = cache.read_text("ir", disk_key, ".mlir")
        if text is not None:
            try:
                return parse_function(text)
            except ParseError as err:
                cache.discard("ir", disk_key, ".mlir", f"it does not parse: {err}")
        try:
            fn = run_pipeline(build_ir(self, specs))
        except CompilationError as err:
            raise err.with_kernel(self.describe(specs)) from err.__cause__
        cache.write_text("ir", disk_key, print_function(fn), ".mlir")
        return fn

    def describe(self, specs: Sequence[Any]) -> str:
        sig = ", ".join(s.type.short if s.kind != "constexpr" else f"{s.name}={s.value!r}" for s in specs)
        return f"`{self.__name__}` specialized for ({sig})"


def _int_dtype(name: str, value: int) -> T.DType:
    """The type an integer argument is passed as: int32 where it fits, else int64, else uint64."""
    if -(2**31) <= value < 2**31:
        return T.int32
    if -(2**63) <= value < 2**63:
        return T.int64
    if 0 <= value < 2**64:
        return T.uint64
    raise LaunchOverflowError(f"argument {name}: {value} fits neither int64 nor uint64")


def _warn_ignored_options(backend: backends.Backend, opts: LaunchOptions, fn: ir.Function) -> None:
    """Warns once per backend and option where a launch or `tl.range` option given has no effect."""
    options.warn_ignored(backend.name, [name for name in opts.non_default() if name not in backend.options])
    if "num_stages" not in backend.options and any(
        op.name == "for" and "num_stages" in op.attrs for op in ir.walk(fn.body)
    ):
        options.warn_ignored(backend.name, ["num_stages"], " of tl.range")


# `@jit` keywords Triton has that change nothing here: every call is inlined, `device_assert`
# and `device_print` act on the interpreter whatever `debug` says, and launches carry no metadata.
_IGNORED_JIT_OPTIONS = (
    "version",
    "repr",
    "launch_metadata",
    "do_not_specialize_on_alignment",
    "debug",
    "noinline",
)


def jit(
    fn: Callable[..., Any] | None = None, *, do_not_specialize: Iterable[Any] = (), **ignored: Any
) -> Any:
    """Compiles `fn` as a kernel: `@jit` or `@jit(do_not_specialize=["n"])`.

    Triton's other `@jit` keywords (`debug`, `noinline`, `version`, `repr`, `launch_metadata`,
    `do_not_specialize_on_alignment`) are accepted with a warning that they have no effect;
    any other keyword is a TypeError.
    """
    for name, value in ignored.items():
        if name not in _IGNORED_JIT_OPTIONS:
            raise TypeError(f"jit() got an unexpected keyword argument {name!r}")
        if value not in (None, False):
            options.warn_once(
                f"@jit({name}=...) has no effect in mtriton (accepted for Triton compatibility)"
            )

    def deco(f: Callable[..., Any]) -> JITFunction:
        return JITFunction(f, do_not_specialize=do_not_specialize)

    return deco(fn) if fn is not None else deco

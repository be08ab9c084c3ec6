"""`@autotune` and `@heuristics`: choosing meta-parameters at launch, as Triton does.

`@autotune(configs, key)` benchmarks every config the first time it sees a
value of `key` (the named arguments: ints by value, arrays by shape and dtype),
launches with the fastest and remembers it, in memory and in a JSON file under
`<cache dir>/autotune/` that later processes read instead of benchmarking again.
With `use_database=True` it first asks the tuning database (`tuning_db`: per device
and kernel, shipped defaults included) and records what it finds there.
`@heuristics({"BLOCK": fn})` computes meta-parameters from the other arguments.
Both wrap a `@jit` function or each other, in either order, and are launched
like it: `kernel[grid](...)` or `kernel[grid].functional(...)`.
"""

from __future__ import annotations

import json
import math
import statistics
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import mlx.core as mx

from .. import cache, options
from ..backends import current_backend_name
from ..errors import LaunchError, MTritonError, OutOfResources
from ..ir import types as T
from ..language.core import constexpr
from ..options import DEFAULT_LAUNCH, LaunchOptions
from . import tuning_db
from .jit import JITFunction, KernelLauncher
from .reinterpret import Reinterpreted, array_of

# Several launches share one `mx.eval`, because launches are lazy and an eval per
# launch would time MLX's scheduling as much as the kernel.
LAUNCHES_PER_EVAL = 8


class Config:
    """One candidate for `@autotune`: meta-parameter values and launch options.

    Args:
        kwargs: Meta-parameters passed to the kernel, e.g. `{"BLOCK": 128}`.
        num_warps, num_stages, num_ctas, maxnreg: Launch options passed to the kernel
            (`mtriton.options.LaunchOptions` has their defaults and checks).
        pre_hook: Called as `pre_hook(args)` with every argument by name
            (this config's included) before each launch with this config.
    """

    def __init__(
        self,
        kwargs: dict[str, Any],
        num_warps: int = DEFAULT_LAUNCH.num_warps,
        num_stages: int = DEFAULT_LAUNCH.num_stages,
        num_ctas: int = DEFAULT_LAUNCH.num_ctas,
        maxnreg: int | None = DEFAULT_LAUNCH.maxnreg,
        pre_hook: Callable[[dict[str, Any]], Any] | None = None,
    ) -> None:
        self.kwargs = dict(kwargs)
        self.options = LaunchOptions(
            num_warps=num_warps, num_stages=num_stages, num_ctas=num_ctas, maxnreg=maxnreg
        )
        self.pre_hook = pre_hook

    @property
    def num_warps(self) -> int:
        return self.options.num_warps

    @property
    def num_stages(self) -> int:
        return self.options.num_stages

    def _launch_items(self) -> dict[str, Any]:
        """num_warps and num_stages, and the other launch options that differ from the defaults."""
        rest = {k: v for k, v in self.options.non_default().items() if k not in ("num_warps", "num_stages")}
        return {"num_warps": self.num_warps, "num_stages": self.num_stages, **rest}

    def all_kwargs(self) -> dict[str, Any]:
        """The meta-parameters and launch options, as keyword arguments of a launch."""
        return {**self.kwargs, **self._launch_items()}

    def _identity(self) -> tuple[Any, ...]:
        return (tuple(sorted(self.kwargs.items())), self.options, self.pre_hook)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Config) and self._identity() == other._identity()

    def __hash__(self) -> int:
        return hash(self._identity())

    def __str__(self) -> str:
        # Stable across processes (no hook addresses): it names the config in the disk cache.
        items = [f"{k}: {v!r}" for k, v in self.kwargs.items()]
        items += [f"{k}: {v!r}" for k, v in self._launch_items().items()]
        return ", ".join(items)

    def __repr__(self) -> str:
        return f"Config({self})"


def time_calls(fn: Callable[[], Any], warmup: float, rep: float) -> list[float]:
    """Milliseconds per call of `fn`, a lazy launch, one sample per batch of calls.

    The first call is not timed (it compiles). One timed call estimates the
    cost, which sets how many calls fill `warmup` and `rep` milliseconds;
    timed calls then run `LAUNCHES_PER_EVAL` at a time per `mx.eval`.

    Args:
        fn: Launches once and returns the arrays to evaluate for that launch.
        warmup: Milliseconds of untimed calls before timing.
        rep: Milliseconds of timed calls.
    """
    mx.eval(fn())
    start = time.perf_counter()
    mx.eval(fn())
    estimate = max(time.perf_counter() - start, 1e-7) * 1e3
    for _ in range(int(warmup / estimate)):
        mx.eval(fn())
    calls = max(1, math.ceil(rep / estimate))
    batch = min(calls, LAUNCHES_PER_EVAL)
    samples = []
    for _ in range(max(1, calls // batch)):
        start = time.perf_counter()
        mx.eval([fn() for _ in range(batch)])
        samples.append((time.perf_counter() - start) * 1e3 / batch)
    return samples


def do_bench(fn: Callable[[], Sequence[mx.array]], warmup: float = 5.0, rep: float = 20.0) -> float:
    """The median of `time_calls(fn, warmup, rep)`: how autotuning times a config."""
    return statistics.median(time_calls(fn, warmup, rep))


class _KernelWrapper:
    """What `@autotune` and `@heuristics` share: launching like a `@jit` function."""

    decorator = ""

    def __init__(self, fn: JITFunction | _KernelWrapper) -> None:
        self.fn = fn
        self.jit_function = getattr(fn, "jit_function", fn)
        if not isinstance(self.jit_function, JITFunction):
            raise LaunchError(f"@{self.decorator} must decorate @jit, @autotune or @heuristics, got {fn!r}")
        self.arg_names = self.jit_function.arg_names
        self.__name__ = self.jit_function.__name__
        self.__doc__ = self.jit_function.__doc__

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        raise LaunchError(f"{self.__name__} is launched as {self.__name__}[grid](...), not called")

    def __getitem__(self, grid: Any) -> KernelLauncher:
        return KernelLauncher(self, grid)  # type: ignore[arg-type]  # KernelLauncher only needs `run`

    def _check_names(self, what: str, names: Iterable[str]) -> list[str]:
        names = list(names)
        unknown = [n for n in names if n not in self.arg_names]
        if unknown:
            raise LaunchError(f"{what} of {self.__name__}: {', '.join(unknown)} not among its parameters")
        return names

    def named_args(self, args: Sequence[Any], kwargs: dict[str, Any]) -> dict[str, Any]:
        """Positional arguments by parameter name, then the keyword arguments."""
        if len(args) > len(self.arg_names):
            raise LaunchError(f"{self.__name__}: takes {len(self.arg_names)} arguments, got {len(args)}")
        return {**dict(zip(self.arg_names, args)), **kwargs}

    def run(self, *args: Any, grid: Any, _functional: bool = False, **kwargs: Any) -> Any:
        """Launches as `kernel[grid](...)` does; see `JITFunction.run`."""
        try:
            return self._run(args, kwargs, grid, _functional)
        except MTritonError as err:
            if options.debug():
                raise
            raise err.with_traceback(None) from None

    def _run(self, args: Sequence[Any], kwargs: dict[str, Any], grid: Any, functional: bool) -> Any:
        raise NotImplementedError


class Heuristics(_KernelWrapper):
    """A kernel whose meta-parameters are computed from its other arguments at launch."""

    decorator = "heuristics"

    def __init__(
        self, fn: JITFunction | _KernelWrapper, values: dict[str, Callable[[dict[str, Any]], Any]]
    ) -> None:
        super().__init__(fn)
        self.values = dict(values)

    def __repr__(self) -> str:
        return f"Heuristics({self.jit_function!r}, {list(self.values)})"

    def _run(self, args: Sequence[Any], kwargs: dict[str, Any], grid: Any, functional: bool) -> Any:
        kwargs = dict(kwargs)
        for name, rule in self.values.items():
            # Later rules see earlier rules' results.
            kwargs[name] = rule(self.named_args(args, kwargs))
        return self.fn.run(*args, grid=grid, _functional=functional, **kwargs)


def heuristics(values: dict[str, Callable[[dict[str, Any]], Any]]) -> Callable[[Any], Heuristics]:
    """Computes meta-parameters at launch: `@heuristics({"BLOCK": lambda args: ...})`.

    Args:
        values: Meta-parameter name -> function of a dict of every argument by
            name (including the results of earlier entries), in order.

    Returns:
        A decorator for a `@jit` function or an `@autotune` wrapper.
    """

    def deco(fn: Any) -> Heuristics:
        return Heuristics(fn, values)

    return deco


def _key_part(name: str, value: Any) -> Any:
    """How an argument distinguishes autotuning results: arrays by shape and dtype."""
    if isinstance(value, constexpr):
        value = value.value
    if isinstance(value, mx.array):
        return (tuple(value.shape), str(value.dtype))
    if isinstance(value, Reinterpreted):
        return (value.shape, str(value.base.dtype), str(value.dtype))
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, T.DType):
        return str(value)
    raise LaunchError(f"autotune key {name}: cannot key on a {type(value).__name__}")


class Autotuner(_KernelWrapper):
    """A kernel launched with the fastest of several configs, chosen per key.

    Attributes:
        configs: The candidate configs.
        keys: The argument names whose values select a tuning result.
        cache: Key -> winning config, for the keys tuned (or read from disk) so far.
        best_config: The config of the latest launch.
        configs_timings: Config -> milliseconds from the latest benchmark.
        use_database: Whether the tuning database is read before a search and written after.
    """

    decorator = "autotune"

    def __init__(
        self,
        fn: JITFunction | _KernelWrapper,
        configs: Sequence[Config],
        key: Iterable[str],
        prune_configs_by: dict[str, Any] | None = None,
        reset_to_zero: Iterable[str] | None = None,
        restore_value: Iterable[str] | None = None,
        pre_hook: Callable[..., Any] | None = None,
        post_hook: Callable[..., Any] | None = None,
        warmup: float = 5.0,
        rep: float = 20.0,
        do_bench: Callable[[Callable[[], Sequence[mx.array]]], float] | None = None,
        use_database: bool = False,
    ) -> None:
        super().__init__(fn)
        self.use_database = use_database
        self.configs = list(configs) or [Config({})]
        self.keys = self._check_names("autotune key", key)
        self.reset_to_zero = self._check_names("reset_to_zero", reset_to_zero or ())
        self.restore_value = self._check_names("restore_value", restore_value or ())
        prune = prune_configs_by or {}
        self.early_config_prune = prune.get("early_config_prune")
        self.perf_model = prune.get("perf_model")
        self.top_k = prune.get("top_k", 10)
        self.pre_hook = pre_hook or self._default_pre_hook
        self.post_hook = post_hook or self._default_post_hook
        self.warmup = warmup
        self.rep = rep
        self.do_bench = do_bench or self._default_bench
        self.cache: dict[tuple[Any, ...], Config] = {}
        self.best_config: Config | None = None
        self.configs_timings: dict[Config, float] = {}
        self._saved: dict[str, mx.array] = {}

    def __repr__(self) -> str:
        return f"Autotuner({self.jit_function!r}, {len(self.configs)} configs, key={self.keys})"

    def _default_bench(self, call: Callable[[], Sequence[mx.array]]) -> float:
        return do_bench(call, self.warmup, self.rep)

    # ------------------------------------------------------------------ hooks

    def _default_pre_hook(self, args: dict[str, Any], reset_only: bool = False) -> None:
        """Zeroes `reset_to_zero` arrays and, before a trial, saves `restore_value` arrays."""
        for name in self.reset_to_zero:
            # zeros_like, not 0: assigning a Python int turns a bool array into int32.
            array = array_of(args[name])
            array[...] = mx.zeros_like(array)
        if not reset_only:
            # A launch replaces an argument's contents (`a[...] = new`), so a
            # reference to the current array is a snapshot.
            self._saved = {name: mx.array(array_of(args[name])) for name in self.restore_value}

    def _default_post_hook(self, args: dict[str, Any], exception: BaseException | None) -> None:
        """Puts back what a trial launch changed in `restore_value` arrays."""
        for name, saved in self._saved.items():
            array_of(args[name])[...] = saved
        self._saved = {}

    # ------------------------------------------------------------------ tuning

    def _key(self, named: dict[str, Any]) -> tuple[Any, ...]:
        missing = [k for k in self.keys if k not in named]
        if missing:
            raise LaunchError(f"{self.__name__}: autotune key {', '.join(missing)} not passed")
        parts = [_key_part(k, named[k]) for k in self.keys]
        # As in Triton, every array's dtype is part of the key: a new dtype is a new kernel.
        parts += [str(v.dtype) for v in named.values() if isinstance(v, (mx.array, Reinterpreted))]
        return (*parts, current_backend_name())

    def prune_configs(self, named: dict[str, Any], kwargs: dict[str, Any]) -> list[Config]:
        """The configs worth benchmarking, after `prune_configs_by`."""
        configs = self.configs
        positional = {k: v for k, v in named.items() if k not in kwargs}
        if self.early_config_prune is not None:
            configs = list(self.early_config_prune(configs, positional, **kwargs))
        if self.perf_model is not None:
            top_k = self.top_k
            if isinstance(top_k, float) and top_k <= 1.0:
                top_k = max(1, int(len(self.configs) * top_k))
            if not isinstance(top_k, int):
                raise LaunchError(f"{self.__name__}: top_k must be an int or a float <= 1.0, got {top_k!r}")
            estimate = {c: self.perf_model(**positional, **kwargs, **c.all_kwargs()) for c in configs}
            configs = sorted(configs, key=estimate.__getitem__)[:top_k]
        if not configs:
            raise LaunchError(f"{self.__name__}: prune_configs_by left no config to launch")
        return configs

    def _disk_key(self, key: tuple[Any, ...]) -> str:
        return cache.key_hash(self.jit_function.cache_key(), key, [str(c) for c in self.configs])

    def _read_disk(self, key: tuple[Any, ...]) -> Config | None:
        text = cache.read_text("autotune", self._disk_key(key), ".json")
        if text is None:
            return None
        try:
            record = json.loads(text)
            config = self.configs[record["config_index"]]
            # The index is only trusted when it still names the same config.
            return config if str(config) == record["config"] else None
        except (ValueError, KeyError, IndexError, TypeError):
            return None

    def _write_disk(self, key: tuple[Any, ...], best: Config) -> None:
        record = {
            "kernel": self.__name__,
            "key": repr(key),
            "config_index": self.configs.index(best),
            "config": str(best),
            "timings_ms": {str(c): t for c, t in self.configs_timings.items()},
        }
        cache.write_text("autotune", self._disk_key(key), json.dumps(record, indent=1), ".json")

    def _database_keys(self, key: tuple[Any, ...]) -> tuple[str, str]:
        """(device key, kernel key); the backend, last in `key`, is in the device key."""
        return (
            tuning_db.device_key(key[-1]),
            tuning_db.kernel_key(self.__name__, self.jit_function.src, key[:-1]),
        )

    def _from_database(self, key: tuple[Any, ...]) -> Config | None:
        """The database's config for `key`, if it names one of this kernel's configs."""
        device, kernel = self._database_keys(key)
        hit = tuning_db.lookup(device, kernel)
        if hit is None:
            return None
        db, matched, entry = hit
        by_record = {json.dumps(tuning_db.config_record(c), sort_keys=True): c for c in self.configs}
        config = by_record.get(json.dumps(entry["config"], sort_keys=True))
        if options.print_autotuning():
            if config is None:
                print(
                    f"mtriton autotuning for {self.__name__}: database {db.path} entry for {matched} "
                    f"is not among the configs, searching: {entry['config']}"
                )
            else:
                print(
                    f"mtriton autotuning for {self.__name__}: database hit in {db.path} "
                    f"({matched}), search skipped; config: {config}"
                )
        return config

    def _record(self, key: tuple[Any, ...], best: Config, timing: float | None) -> None:
        """Writes `best` (searched now, with its `timing`, or read from the disk cache) to the
        tuning database."""
        device, kernel = self._database_keys(key)
        entry: dict[str, Any] = {"config": tuning_db.config_record(best)}
        if timing is not None:
            entry["timing_ms"] = timing
        tuning_db.record(device, kernel, entry)

    def _bench(
        self, args: Sequence[Any], kwargs: dict[str, Any], grid: Any, config: Config, functional: bool
    ) -> float:
        """Milliseconds per launch with `config`; infinite when it does not fit the target."""
        current = {**kwargs, **config.all_kwargs()}
        full = {**self.named_args(args, kwargs), **current}
        arrays = [name for name, value in full.items() if array_of(value) is not None]

        def kernel_call() -> list[mx.array]:
            if config.pre_hook is not None:
                config.pre_hook(full)
            if not functional:  # a functional trial writes nothing that needs resetting
                self.pre_hook(full)
            try:
                out = self.fn.run(*args, grid=grid, _functional=functional, **current)
            except Exception as err:
                if not functional:
                    self.post_hook(full, exception=err)
                raise
            if functional:
                return list(out)
            # Snapshots before the post hook restores the arguments: evaluating
            # them is what runs this launch.
            written = [mx.array(array_of(full[name])) for name in arrays]
            self.post_hook(full, exception=None)
            return written

        try:
            return float(self.do_bench(kernel_call))
        except OutOfResources:
            return math.inf

    def _run(self, args: Sequence[Any], kwargs: dict[str, Any], grid: Any, functional: bool) -> Any:
        named = self.named_args(args, kwargs)
        conflicts = sorted({k for c in self.configs for k in c.kwargs} & kwargs.keys())
        if conflicts:
            raise LaunchError(
                f"{self.__name__}: {', '.join(conflicts)} passed to a launch but also set by autotune configs"
            )
        if len(self.configs) == 1:
            config = self.configs[0]
        else:
            key = self._key(named)
            if key not in self.cache:
                config = self._from_database(key) if self.use_database else None
                if config is None:
                    config, timing = self._read_disk(key), None
                    if config is None:
                        config = self._tune(args, kwargs, grid, functional, named, key)
                        timing = self.configs_timings[config]
                    if self.use_database:
                        self._record(key, config, timing)
                self.cache[key] = config
            config = self.cache[key]
        self.best_config = config
        launch = {**kwargs, **config.all_kwargs()}
        if config.pre_hook is not None:
            config.pre_hook({**named, **launch})
        return self.fn.run(*args, grid=grid, _functional=functional, **launch)

    def _tune(
        self,
        args: Sequence[Any],
        kwargs: dict[str, Any],
        grid: Any,
        functional: bool,
        named: dict[str, Any],
        key: tuple[Any, ...],
    ) -> Config:
        """Benchmarks the pruned configs and records the fastest on disk."""
        pruned = self.prune_configs(named, kwargs)
        start = time.perf_counter()
        self.configs_timings = {c: self._bench(args, kwargs, grid, c, functional) for c in pruned}
        best = min(pruned, key=self.configs_timings.__getitem__)
        if options.print_autotuning():
            print(
                f"mtriton autotuning for {self.__name__} finished after "
                f"{time.perf_counter() - start:.2f}s ({len(pruned)} configs); best config: {best}"
            )
        if not functional:
            # The last trial's writes to reset_to_zero arrays are not undone by
            # restoring: zero them again for the real launch.
            self.pre_hook({**named, **best.all_kwargs()}, reset_only=True)
        self._write_disk(key, best)
        return best


def autotune(
    configs: Sequence[Config],
    key: Iterable[str],
    prune_configs_by: dict[str, Any] | None = None,
    reset_to_zero: Iterable[str] | None = None,
    restore_value: Iterable[str] | None = None,
    pre_hook: Callable[..., Any] | None = None,
    post_hook: Callable[..., Any] | None = None,
    warmup: float = 5.0,
    rep: float = 20.0,
    do_bench: Callable[[Callable[[], Sequence[mx.array]]], float] | None = None,
    use_database: bool = False,
) -> Callable[[Any], Autotuner]:
    """Launches a kernel with the fastest of `configs`, tuned once per value of `key`.

    Args:
        configs: Candidate meta-parameters and launch options.
        key: Argument names; a new combination of their values (ints by value,
            arrays by shape and dtype), of the argument dtypes or of the
            backend triggers benchmarking.
        prune_configs_by: Optional `early_config_prune(configs, named_args,
            **kwargs) -> configs`, and `perf_model(**args, **config_kwargs) ->
            estimated time` with `top_k` (an int, or a fraction of the configs)
            to benchmark only the `top_k` best estimates.
        reset_to_zero: Array arguments zeroed before each trial launch and
            again before the real one, for kernels that accumulate into them.
        restore_value: Array arguments restored after each trial launch, for
            kernels that update them in place.
        pre_hook: Replaces the reset/save hook; called as
            `pre_hook(args, reset_only=False)` before each trial.
        post_hook: Replaces the restore hook; called as
            `post_hook(args, exception=...)` after each trial.
        warmup: Milliseconds of untimed launches per config.
        rep: Milliseconds of timed launches per config.
        do_bench: Replaces the timing: `do_bench(call) -> milliseconds`,
            where `call()` launches once and returns the arrays to evaluate.
        use_database: Look the key up in the tuning database (`mtriton.runtime.tuning_db`:
            MTRITON_TUNING_DB, the cache's, the package's defaults) before searching,
            and record the result there after; MTRITON_PRINT_AUTOTUNING=1 says which.

    Returns:
        A decorator for a `@jit` function or a `@heuristics` wrapper.
    """

    def deco(fn: Any) -> Autotuner:
        return Autotuner(
            fn, configs, key, prune_configs_by, reset_to_zero, restore_value,
            pre_hook, post_hook, warmup, rep, do_bench, use_database,
        )  # fmt: skip

    return deco

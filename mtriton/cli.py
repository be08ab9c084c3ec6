"""`mtriton dump-ir|dump-metal|dump-cuda FILE.py:KERNEL --signature ... -c NAME=VALUE`.

Compiles one kernel for a given signature without running it and prints the
IR, or the source a GPU backend hands to MLX.
"""

from __future__ import annotations

import argparse
import ast
import importlib.util
import inspect
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .backends.dump import source_dump
from .errors import MTritonError
from .frontend import ArgSpec
from .ir import types as T
from .ir.printer import print_function
from .options import DEFAULT_LAUNCH, LaunchOptions


def load_kernel(target: str) -> Any:
    """Imports `FILE.py:KERNEL` and returns the @jit function."""
    path, sep, name = target.rpartition(":")
    if not sep or not path or not name:
        raise SystemExit(f"expected FILE.py:KERNEL, got {target!r}")
    file = Path(path).resolve()
    spec = importlib.util.spec_from_file_location(file.stem, file)
    if spec is None or spec.loader is None:
        raise SystemExit(f"cannot import {file}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[file.stem] = module
    spec.loader.exec_module(module)
    kernel = getattr(module, name, None)
    kernel = getattr(kernel, "jit_function", kernel)
    if not getattr(kernel, "is_mtriton_jit", False):
        raise SystemExit(f"{file.name} has no @mtriton.jit function called {name!r}")
    return kernel


def parse_constexprs(items: Sequence[str]) -> dict[str, Any]:
    """`["BLOCK=1024", "FLAG=True"]` -> {"BLOCK": 1024, "FLAG": True} (values as Python literals)."""
    out: dict[str, Any] = {}
    for item in items:
        name, sep, text = item.partition("=")
        if not sep:
            raise SystemExit(f"-c expects NAME=VALUE, got {item!r}")
        try:
            out[name] = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            out[name] = T.BY_NAME.get(text, text)  # dtype names such as float16, or a bare string
    return out


def build_specs(kernel: Any, signature: str, constexprs: dict[str, Any]) -> list[ArgSpec]:
    """ArgSpecs from a `*fp32,*fp32,i32` signature (one type per non-constexpr parameter)."""
    types = [t.strip() for t in signature.split(",") if t.strip()]
    runtime = [n for n in kernel.arg_names if n not in kernel.constexpr_names and n not in constexprs]
    if len(types) != len(runtime):
        raise SystemExit(
            f"--signature lists {len(types)} types but {kernel.__name__} has {len(runtime)} "
            f"non-constexpr parameters: {', '.join(runtime)}"
        )
    defaults = {p.name: p.default for p in kernel.signature.parameters.values()}
    given = dict(zip(runtime, types))
    specs: list[ArgSpec] = []
    for name in kernel.arg_names:
        if name not in given:
            value = constexprs.get(name, defaults[name])
            if value is inspect.Parameter.empty:
                raise SystemExit(f"constexpr {name} needs a value: -c {name}=...")
            specs.append(ArgSpec(name, "constexpr", value=value))
            continue
        text, _, div = given[name].partition(":")
        elem = T.parse_elem(text)
        if isinstance(elem, T.PointerType):
            specs.append(ArgSpec.pointer(name, elem.element))
        else:  # `i32:1` and `i32:16` as the launcher specializes integers equal to 1 or divisible by 16
            specs.append(ArgSpec.scalar(name, elem, one=div == "1", divisible_by_16=div == "16"))
    return specs


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="mtriton", description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=["dump-ir", "dump-metal", "dump-cuda"])
    parser.add_argument("target", help="FILE.py:KERNEL")
    parser.add_argument(
        "--signature",
        "-s",
        required=True,
        help="types of the non-constexpr parameters, e.g. '*fp32,*fp32,i32'",
    )
    parser.add_argument("-c", dest="constexprs", action="append", default=[], metavar="NAME=VALUE")
    parser.add_argument("--num-warps", type=int, default=DEFAULT_LAUNCH.num_warps)
    parser.add_argument("--num-stages", type=int, default=DEFAULT_LAUNCH.num_stages)
    parser.add_argument(
        "--full", action="store_true", help="dump-metal/dump-cuda: the complete source with MLX's signature"
    )
    args = parser.parse_args(argv)

    kernel = load_kernel(args.target)
    specs = build_specs(kernel, args.signature, parse_constexprs(args.constexprs))
    try:
        opts = LaunchOptions(num_warps=args.num_warps, num_stages=args.num_stages)
        if args.command == "dump-ir":
            print(print_function(kernel.compile_ir(specs, "interpreter")))
        else:
            target = args.command.removeprefix("dump-")
            print(source_dump(target, kernel.compile_ir(specs, target), opts, full=args.full))
    except MTritonError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Every Triton kernel compiles for Hopper (sm_90) with the tiles the backend launches, on a
machine without a GPU: Triton's frontend and its bundled ptxas need none. The interpreter
tests cannot see what only compilation does (register and shared-memory use, constructs the
compiler refuses); a block needing more shared memory than a Hopper block may have would
fail at launch on the GPU.

The compilation runs in a subprocess: this test session may have loaded the kernels under
Triton's interpreter (`test_linear_backends.py` sets TRITON_INTERPRET=1), where they cannot
be compiled. Slow (about two minutes): `pytest -m slow tests/model/test_triton_compiles.py`.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from seq2seq.model.attention.backends import TRITON_INSTALLED

HOPPER_SHARED_MEMORY = 227 * 1024
"""The most shared memory one block may have on an H100 / H200."""
IO_POINTERS = ("q_ptr", "k_ptr", "v_ptr", "out_ptr", "grad_out_ptr")
GRADIENT_OUTPUTS = ("grad_q_ptr", "grad_k_ptr", "grad_v_ptr")
FLOAT_ARGUMENTS = ("half_scale_sq", "log_sqrt_m")


def _signature(kernel: Any, io_dtype: str, constants: dict[str, Any]) -> dict[str, str]:
    """Triton's type for each argument: inputs and gradients in `io_dtype`, buffers fp32."""
    signature = {}
    for name in kernel.arg_names:
        if name in constants:
            signature[name] = "constexpr"
        elif name == "mask_ptr":
            signature[name] = "*u8"
        elif name in IO_POINTERS or (
            kernel.__name__.startswith("linear_backward") and name in GRADIENT_OUTPUTS
        ):
            signature[name] = io_dtype
        elif name.endswith("_ptr"):
            signature[name] = "*fp32"
        else:
            signature[name] = "fp32" if name in FLOAT_ARGUMENTS else "i32"
    return signature


def compile_every_kernel() -> list[str]:
    """Compile each kernel for FAVOR+ and elu, bf16 and fp32 inputs; the problems found."""
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    from seq2seq.model.attention import triton_backend as backend
    from seq2seq.model.attention import triton_kernels as kernels

    launches = [
        (kernels.causal_forward_kernel, backend.CAUSAL_FORWARD),
        (kernels.causal_backward_query_kernel, backend.CAUSAL_BACKWARD),
        (kernels.causal_backward_key_kernel, backend.CAUSAL_BACKWARD),
        (kernels.row_max_kernel, backend.NON_CAUSAL),
        (kernels.key_state_kernel, backend.NON_CAUSAL),
        (kernels.linear_forward_kernel, backend.NON_CAUSAL),
        (kernels.linear_backward_state_kernel, backend.NON_CAUSAL),
        (kernels.linear_backward_query_kernel, backend.NON_CAUSAL),
        (kernels.linear_backward_key_kernel, backend.NON_CAUSAL),
    ]
    problems = []
    for kernel, tiles in launches:
        for kind in (0, 1) if "KIND" in kernel.arg_names else (0,):
            for io_dtype in ("*bf16", "*fp32"):
                constants: dict[str, Any] = {
                    "BLOCK_C": tiles.chunk,
                    "BLOCK_D": 64,
                    "BLOCK_M": tiles.features if kind == 0 else min(tiles.features, 64),
                    "PRECISION": "tf32",
                }
                for name, value in (("KIND", kind), ("HAS_MASK", True), ("IS_KEY", True)):
                    if name in kernel.arg_names:
                        constants[name] = value
                if "SMALLEST" in kernel.arg_names:
                    constants["SMALLEST"] = 1e-30
                label = f"{kernel.__name__} kind={kind} {io_dtype}"
                try:
                    compiled = triton.compile(
                        ASTSource(kernel, _signature(kernel, io_dtype, constants), constants),
                        target=GPUTarget("cuda", 90, 32),
                        options={"num_warps": tiles.warps, "num_stages": tiles.stages},
                    )
                except Exception as error:
                    problems.append(f"{label}: {type(error).__name__}: {error}")
                    continue
                shared = compiled.metadata.shared
                print(f"{label}: {shared} bytes of shared memory", flush=True)
                if shared > HOPPER_SHARED_MEMORY:
                    problems.append(f"{label}: {shared} bytes of shared memory")
    return problems


@pytest.mark.slow
@pytest.mark.skipif(not TRITON_INSTALLED, reason="needs triton (the dev or gpu extra)")
def test_every_kernel_compiles_for_hopper() -> None:
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    result = subprocess.run(
        [sys.executable, str(Path(__file__))], env=env, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]


if __name__ == "__main__":
    found = compile_every_kernel()
    print("\n".join(found))
    sys.exit(1 if found else 0)

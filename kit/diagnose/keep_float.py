"""The smallest set of layers to keep in float that brings the final output to a target cosine.

Method (greedy by local error, verified): the candidates are prefixes of the worst-first order
(lowest local SQNR first). A prefix of length k is judged only by measurement: the model is
quantized again with those k layers left in float, run on the same inputs, and its final output's
cosine against FP32 is computed. k is searched by doubling (1, 2, 4, ...) until a prefix reaches
the target, then by bisection between the last prefix that missed and the first that reached it.
Bisection assumes that keeping more of the worst layers in float never lowers the cosine; every
measured prefix is reported (``steps``), and the set returned is one that was measured to reach
the target (or, when none did, the best measured, marked as not reached).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import numpy as np

from kit.diagnose.metrics import both
from kit.diagnose.records import KeepInFloat, LayerError, Step

METHOD = (
    "greedy by local error: prefixes of the worst-first order (lowest local SQNR first); each "
    "candidate prefix verified by quantizing the model again with those layers in float and "
    "measuring the final output's cosine against FP32 on the same inputs; prefix length found by "
    "doubling then bisection (assumes keeping more layers never lowers the cosine); every "
    "measured prefix is listed in steps"
)


def search(
    worst_first: Sequence[LayerError],
    reference: np.ndarray,
    quantized_output: Callable[[Sequence[LayerError]], np.ndarray],
    target_cosine: float,
    base_cosine: float,
    base_sqnr_db: float,
) -> KeepInFloat:
    """Run the search; ``quantized_output(keep)`` quantizes again without ``keep`` and runs it."""
    n = len(worst_first)
    measured: dict[int, Step] = {0: Step(kept=0, cosine=base_cosine, sqnr_db=base_sqnr_db, seconds=0.0)}

    def measure(k: int) -> Step:
        if k not in measured:
            started = time.perf_counter()
            out = quantized_output(list(worst_first[:k]))
            sqnr, cos = both(reference, out)
            measured[k] = Step(kept=k, cosine=cos, sqnr_db=sqnr, seconds=round(time.perf_counter() - started, 3))
        return measured[k]

    def reaches(k: int) -> bool:
        return measure(k).cosine >= target_cosine

    found: int | None = 0 if reaches(0) else None
    if found is None and n:
        low, k = 0, 1
        while True:
            if reaches(k):
                high = k
                break
            low = k
            if k == n:
                high = -1
                break
            k = min(2 * k, n)
        if high > 0:
            while high - low > 1:
                mid = (low + high) // 2
                if reaches(mid):
                    high = mid
                else:
                    low = mid
            found = high
    if found is None:
        best = max(measured.values(), key=lambda s: (s.cosine, -s.kept))
        chosen, reached = best.kept, False
    else:
        chosen, reached = found, True
    step = measured[chosen]
    return KeepInFloat(
        target_cosine=target_cosine,
        method=METHOD,
        layers=[layer.name for layer in worst_first[:chosen]],
        verified_cosine=step.cosine,
        verified_sqnr_db=step.sqnr_db,
        reached=reached,
        steps=[measured[k] for k in sorted(measured)],
        layers_total=n,
        nodes=[layer.node for layer in worst_first[:chosen] if layer.node],
    )

"""Study-level statements: the software versions and the hardware the study says it used,
against the environment our result documents recorded."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from kit.claims.load import Claim
from kit.claims.validate.index import ResultIndex
from kit.claims.validate.values import dig
from kit.claims.validate.verdict import Verdict, base_verdict
from kit.hardware.gpus import same_hardware_name

_ENV_GETTERS: dict[str, Callable[[dict[str, Any]], Any]] = {
    "torch": lambda e: dig(e, "packages", "torch"),
    "bitsandbytes": lambda e: dig(e, "packages", "bitsandbytes"),
    "torchvision": lambda e: dig(e, "packages", "torchvision"),
    "transformers": lambda e: dig(e, "packages", "transformers"),
    "cuda": lambda e: dig(e, "cuda", "torch_cuda_build") or dig(e, "cuda", "version"),
    "python": lambda e: e.get("python"),
    "os": lambda e: e.get("os"),
}


def _env_values(index: ResultIndex, item: str) -> list[str]:
    getter = _ENV_GETTERS.get(item)
    if getter is None:
        return []
    return sorted({str(v) for e in index.environments if (v := getter(e)) not in (None, "")})


def _version_tuple(text: str) -> tuple[int, ...]:
    return tuple(int(x) for x in re.findall(r"\d+", text)[:3])


def version_matches(claimed: str, ours: str) -> bool:
    """'2.1.0' matches '2.1.0+cu121'; '3.8+' matches any 3.8 or newer; 'Ubuntu 22.04' matches text containing it."""
    claimed, ours = claimed.strip(), ours.strip()
    if claimed.endswith("+"):
        return _version_tuple(ours) >= _version_tuple(claimed[:-1])
    if ours == claimed or any(ours.startswith(claimed + sep) for sep in ".+-_ "):
        return True
    return " " in claimed and claimed.lower() in ours.lower()


def judge_version(claim: Claim, index: ResultIndex) -> Verdict:
    item = claim.subject.item or ""
    ours = _env_values(index, item)
    if not index.environments:
        return base_verdict(claim, "not-measured", "no result documents, so no environment to compare with")
    if not ours:
        return base_verdict(
            claim, "not-measured", f"our results record no {item} version (not installed or not captured)"
        )
    matched = all(version_matches(str(claim.value), v) for v in ours)
    reason = f"the study used {item} {claim.value}; ours: {', '.join(ours)}"
    if matched:
        return base_verdict(claim, "pass", reason, measured=", ".join(ours))
    return base_verdict(
        claim, "not-comparable", reason + ": our numbers may differ for that reason alone", measured=", ".join(ours)
    )


def judge_hardware(claim: Claim, index: ResultIndex) -> Verdict:
    if not index.environments:
        return base_verdict(claim, "not-measured", "no result documents, so no hardware to compare with")
    item = claim.subject.item or "gpu"
    key = ("gpu", "name") if item == "gpu" else ("cpu", "model")
    ours = sorted({str(v) for e in index.environments if (v := dig(e, *key))})
    if not ours:
        return base_verdict(
            claim,
            "not-comparable",
            f"the study ran on {claim.value}; our results ran without a {item}",
            hardware={"claimed": str(claim.value), "ours": None},
        )
    same = all(same_hardware_name(str(claim.value), name) for name in ours)
    reason = f"the study ran on {claim.value}; ours: {', '.join(ours)}"
    verdict = "pass" if same else "not-comparable"
    return base_verdict(
        claim,
        verdict,
        reason + ("" if same else ": hardware-bound claims are shown, not judged"),
        measured=", ".join(ours),
        hardware={"claimed": str(claim.value), "ours": ", ".join(ours)},
    )


def judge_study(claim: Claim, index: ResultIndex) -> Verdict:
    if claim.metric == "hardware":
        return judge_hardware(claim, index)
    if claim.metric == "software_version":
        return judge_version(claim, index)
    return base_verdict(claim, "unsupported", f"qkit has no rule to check the study statement {claim.metric!r}")

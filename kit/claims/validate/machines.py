"""Where a number was measured: machine identity, which machine may judge a claim, and the
one-line summary of a claim judged on several machines."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from kit.claims.load import Claim
from kit.claims.validate.values import dig
from kit.claims.validate.verdict import JUDGED
from kit.hardware.gpus import same_hardware_name
from kit.hardware.machine import cpu_name, gpu_name, short_name


@dataclass(frozen=True, order=True)
class Machine:
    """Where a number was measured: the device and the GPU (cuda) or CPU (cpu) model."""

    device: str
    name: str

    def label(self) -> str:
        return f"{self.name} ({self.device})"


# Device-independent quantities (serialized size, parameters, accuracy) are "measured anywhere".
ANYWHERE = Machine("any", "any machine")


def machine_of(doc: dict[str, Any]) -> Machine:
    """The machine a document was measured on, named as everywhere (`kit.hardware.machine`)."""
    device = dig(doc, "cell", "device") or "?"
    environment = doc.get("environment")
    if device == "cuda":
        return Machine("cuda", gpu_name(environment) or "unknown GPU")
    return Machine(device, cpu_name(environment) or "unknown CPU")


def machine_list(results: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """The machines the result documents come from, with how many documents (and ok ones) each."""
    docs = list(results)
    total = Counter(machine_of(d) for d in docs)
    ok = Counter(machine_of(d) for d in docs if d.get("status") == "ok")
    return [
        {"machine": m.label(), "name": m.name, "device": m.device, "documents": n, "ok": ok[m]}
        for m, n in sorted(total.items())
    ]


def claimed_hardware(claim: Claim) -> str | None:
    key = "cpu" if claim.device == "cpu" else "gpu"
    value = claim.hardware.get(key)
    return value if isinstance(value, str) else None


def comparable_machine(claim: Claim, machine: Machine) -> bool:
    """May ``machine`` judge a hardware-bound claim: the claimed device and the claimed GPU/CPU model."""
    return machine.device == claim.device and same_hardware_name(claimed_hardware(claim), machine.name)


def hardware_field(claim: Claim, machine: Machine) -> dict[str, str | None]:
    return {"claimed": claimed_hardware(claim), "ours": machine.label()}


# ========================================================================= across machines


def overall_verdict(verdicts: Iterable[str]) -> str | None:
    """The claim's verdict from its verdicts per machine (package doc); None when no machine could judge it."""
    judged = [v for v in verdicts if v in JUDGED]
    if not judged:
        return None
    if "fail" in judged:
        return "fail"
    return "pass" if all(v == "pass" for v in judged) else "inconclusive"


def _short_names(machines: list[Machine]) -> dict[Machine, str]:
    """'NVIDIA GeForce RTX 4090' -> 'RTX 4090', 'Tesla T4' -> 'T4'; full labels where that would be ambiguous."""
    one_device = len({m.device for m in machines}) == 1
    short = {m: short_name(m.name) for m in machines}
    if not one_device or len(set(short.values())) < len(short):
        return {m: m.label() for m in machines}
    return short


_SUMMARY_WORDS = (
    ("fail", "fails on"),
    ("inconclusive", "inconclusive on"),
    ("not-comparable", "not comparable on"),
    ("not-measured", "not measured on"),
)


def machines_summary(outcomes: dict[Machine, str], device: str | None) -> str:
    """'holds on 2 of 3 GPUs (fails on T4; not measured on A10)'."""
    names = _short_names(sorted(outcomes))
    judged = [m for m, v in outcomes.items() if v in JUDGED]
    held = sum(1 for m in judged if outcomes[m] == "pass")
    noun = "GPU" if device == "cuda" else "machine"
    if judged:
        head = f"holds on {held} of {len(judged)} {noun}{'s' if len(judged) != 1 else ''}"
    else:
        head = f"judged on none of {len(outcomes)} {noun}s"
    rest = [
        "{} {}".format(words, ", ".join(names[m] for m in sorted(outcomes) if outcomes[m] == verdict))
        for verdict, words in _SUMMARY_WORDS
        if verdict in outcomes.values()
    ]
    return head + (f" ({'; '.join(rest)})" if rest else "")

"""Peak rates of the GPUs the seeds (and the kit's device machines) name, with their sources.

All compute figures are **dense** (no 2:4 sparsity) peak rates at the boost clock, in TFLOP/s
(TOP/s for INT8), as the vendor publishes them; bandwidth in GB/s (10^9 bytes/s), memory in GB as
marketed. The audit uses them only as *upper bounds*: a claimed time below ``work / peak`` is
impossible, so where a card has two FP16 tensor rates (GeForce parts run FP16 with FP32
accumulate at half the FP16-accumulate rate) the table keeps the higher one and notes the other.

Sources (vendor documents):
- NVIDIA Ada GPU Architecture whitepaper v2.1 (2023), Appendix A, "NVIDIA GeForce RTX 4090"
  table: https://images.nvidia.com/aem-dam/Solutions/geforce/ada/nvidia-ada-gpu-architecture.pdf
- NVIDIA GeForce RTX 4070 family product page (RTX 4070 Ti SUPER: 8,448 CUDA cores, 2.61 GHz
  boost, 16 GB GDDR6X, 256-bit, 21 Gbps, "706 AI TOPS" = FP8 with sparsity):
  https://www.nvidia.com/en-us/geforce/graphics-cards/40-series/rtx-4070-family/
  Rates derived with the whitepaper's per-SM ratios for AD10x: FP32 = 2 x 8,448 x 2.61 GHz =
  44.1 TFLOP/s; FP16 tensor (FP16 acc.) = 4 x FP32 = 176.4 (dense; = 706 / 4); bandwidth =
  256 bit / 8 x 21 Gbps = 672 GB/s.
- NVIDIA T4 Tensor Core GPU datasheet (2019): https://www.nvidia.com/content/dam/en-zz/Solutions/Data-Center/tesla-t4/t4-tensor-core-datasheet-951643.pdf
- NVIDIA A100 Tensor Core GPU datasheet (2021, 80GB SXM column):
  https://www.nvidia.com/content/dam/en-zz/Solutions/Data-Center/a100/pdf/nvidia-a100-datasheet-us-nvidia-1758950-r4-web.pdf
- NVIDIA H100 Tensor Core GPU datasheet (2023, SXM and PCIe columns; the datasheet's tensor
  figures are with sparsity, dense = half): https://resources.nvidia.com/en-us-tensor-core/nvidia-tensor-core-gpu-datasheet
- NVIDIA H200 Tensor Core GPU datasheet (2024, SXM column; same compute as H100 SXM):
  https://nvdam.widen.net/s/nb5zzzsjdf/hpc-datasheet-sc23-h200-datasheet-3002446
- NVIDIA L4 Tensor Core GPU datasheet (2023; figures with sparsity halved for dense):
  https://nvdam.widen.net/s/rvq98gbwsw/l4-datasheet-2595652
"""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True)
class GpuSpec:
    name: str
    aliases: tuple[str, ...]
    fp32_tflops: float  # non-tensor FP32 (CUDA cores)
    tf32_tflops: float | None  # TF32 tensor, dense (None: no TF32, pre-Ampere)
    fp16_tensor_tflops: float  # FP16 tensor, dense, highest published accumulate mode
    int8_tensor_tops: float  # INT8 tensor, dense
    bandwidth_gbs: float
    memory_gb: float
    released: str  # ISO date of launch (for provenance checks)
    source: str
    note: str = ""

    def peak_for(self, path: str | None) -> tuple[float, str]:
        """Most generous peak (FLOP/s) any kernel of ``path`` could reach, and its name."""
        p = (path or "").lower()
        fp32 = max(self.fp32_tflops, self.tf32_tflops or 0.0)
        if "int8" in p or "int4" in p or "nf4" in p:
            # bitsandbytes computes in FP16 after dequantising (NF4) or INT8 tensor cores
            # (LLM.int8 igemmlt); the larger bound is the generous one.
            return max(self.int8_tensor_tops, self.fp16_tensor_tflops) * 1e12, "INT8 tensor dense"
        if "fp16" in p or "bf16" in p or "half" in p:
            return self.fp16_tensor_tflops * 1e12, "FP16 tensor dense"
        return fp32 * 1e12, "FP32/TF32 dense"


GPUS: tuple[GpuSpec, ...] = (
    GpuSpec(
        name="NVIDIA GeForce RTX 4070 Ti SUPER",
        aliases=("rtx 4070 ti super", "4070 ti super", "4070tisuper"),
        fp32_tflops=44.1,
        tf32_tflops=44.1,
        fp16_tensor_tflops=176.4,
        int8_tensor_tops=352.8,
        bandwidth_gbs=672.0,
        memory_gb=16.0,
        released="2024-01-24",
        source="NVIDIA RTX 4070 family product page + Ada architecture whitepaper v2.1 ratios",
        note="FP16 tensor with FP32 accumulate (what cuBLAS uses for torch half GEMMs) is 88.2 dense",
    ),
    GpuSpec(
        name="NVIDIA GeForce RTX 4090",
        aliases=("rtx 4090", "4090"),
        fp32_tflops=82.6,
        tf32_tflops=82.6,
        fp16_tensor_tflops=330.3,
        int8_tensor_tops=660.6,
        bandwidth_gbs=1008.0,
        memory_gb=24.0,
        released="2022-10-12",
        source="NVIDIA Ada GPU architecture whitepaper v2.1, Appendix A",
        note="FP16 tensor with FP32 accumulate is 165.2 dense",
    ),
    GpuSpec(
        name="NVIDIA T4",
        aliases=("tesla t4", "t4"),
        fp32_tflops=8.1,
        tf32_tflops=None,
        fp16_tensor_tflops=65.0,
        int8_tensor_tops=130.0,
        bandwidth_gbs=320.0,
        memory_gb=16.0,
        released="2018-09-12",
        source="NVIDIA T4 Tensor Core GPU datasheet",
    ),
    GpuSpec(
        name="NVIDIA A100 80GB SXM",
        aliases=("a100",),
        fp32_tflops=19.5,
        tf32_tflops=156.0,
        fp16_tensor_tflops=312.0,
        int8_tensor_tops=624.0,
        bandwidth_gbs=2039.0,
        memory_gb=80.0,
        released="2020-11-16",
        source="NVIDIA A100 Tensor Core GPU datasheet (80GB SXM)",
        note="A100 40GB PCIe: 1,555 GB/s; compute the same",
    ),
    GpuSpec(
        name="NVIDIA H100 SXM",
        aliases=("h100",),
        fp32_tflops=67.0,
        tf32_tflops=494.5,
        fp16_tensor_tflops=989.5,
        int8_tensor_tops=1979.0,
        bandwidth_gbs=3350.0,
        memory_gb=80.0,
        released="2022-09-20",
        source="NVIDIA H100 Tensor Core GPU datasheet (SXM; sparse figures halved)",
        note="H100 PCIe: 51 FP32, 756 FP16 dense, 2,000 GB/s",
    ),
    GpuSpec(
        # torch names it "NVIDIA H100 PCIe": without this entry it would match the SXM card's
        # higher peaks and a measured fraction of peak would read low.
        name="NVIDIA H100 PCIe",
        aliases=("h100 pcie",),
        fp32_tflops=51.0,
        tf32_tflops=378.0,
        fp16_tensor_tflops=756.0,
        int8_tensor_tops=1513.0,
        bandwidth_gbs=2000.0,
        memory_gb=80.0,
        released="2022-09-20",
        source="NVIDIA H100 Tensor Core GPU datasheet (PCIe column; sparse figures halved)",
    ),
    GpuSpec(
        name="NVIDIA H200 SXM",
        aliases=("h200",),
        fp32_tflops=67.0,
        tf32_tflops=494.5,
        fp16_tensor_tflops=989.5,
        int8_tensor_tops=1979.0,
        bandwidth_gbs=4800.0,
        memory_gb=141.0,
        released="2023-11-13",  # announced; shipped in 2024
        source="NVIDIA H200 Tensor Core GPU datasheet (SXM; sparse figures halved)",
    ),
    GpuSpec(
        name="NVIDIA L4",
        aliases=("l4",),
        fp32_tflops=30.3,
        tf32_tflops=60.0,
        fp16_tensor_tflops=121.0,
        int8_tensor_tops=242.5,
        bandwidth_gbs=300.0,
        memory_gb=24.0,
        released="2023-03-21",
        source="NVIDIA L4 Tensor Core GPU datasheet (sparse figures halved)",
    ),
)


def _norm(s: str) -> str:
    return re.sub(r"[^a-z0-9]+", " ", s.lower()).strip()


# ------------------------------------------------------------------------------ name matching
#
# Two matchers over one normalisation (`_norm`), because they answer different questions:
#
# * `find_gpu` maps a name to a datasheet entry, so it must tell apart what the datasheet tells
#   apart (H100 PCIe and H100 SXM have different peaks) and knows only the cards listed above.
# * `same_hardware_name` says whether two recorded names are the same hardware *model*, for
#   validate's hardware-bound claims: it must work for any GPU (and for CPU model strings), and
#   the study's names ("NVIDIA A100 80GB", "A100-SXM4-40GB") differ from torch's in memory size
#   and form factor, which validate treats as the same model. Defining it as "both names find the
#   same spec" would turn every unlisted GPU and every CPU into "not the same" and split H100 PCIe
#   from SXM, changing verdicts; so the two stay separate.

_VENDOR_WORDS = {"nvidia", "geforce", "tesla", "quadro", "corporation", "r", "tm"}
_FORM_WORDS = re.compile(r"^(\d+gb|pcie|sxm\d*|hbm\d*e?|nvl|gb|gddr\d*x?)$")


def _hardware_tokens(name: str) -> tuple[str, ...]:
    """The words of ``name`` that name the model: vendor, memory and form-factor words dropped."""
    return tuple(t for t in _norm(name).split() if t not in _VENDOR_WORDS and not _FORM_WORDS.match(t))


def same_hardware_name(claimed: str | None, ours: str) -> bool:
    """'NVIDIA RTX 4070 Ti SUPER' == 'NVIDIA GeForce RTX 4070 Ti SUPER'; a 4070 Ti is not a 4070 Ti SUPER."""
    return bool(claimed) and _hardware_tokens(str(claimed)) == _hardware_tokens(ours)


def find_gpu(name: str | None) -> GpuSpec | None:
    """The spec whose alias appears (as whole words) in ``name``; longest alias wins."""
    if not name:
        return None
    text = f" {_norm(name)} "
    best: tuple[int, GpuSpec] | None = None
    for spec in GPUS:
        for alias in spec.aliases:
            if f" {_norm(alias)} " in text and (best is None or len(alias) > best[0]):
                best = (len(alias), spec)
    return best[1] if best else None

"""Peak numbers of the cards gpu-check knows, by the name CUDA reports (torch.cuda.get_device_name).

bf16 dense tensor-core peak (TFLOP/s, no sparsity) and HBM bandwidth (TB/s), from NVIDIA's data
sheets. First match wins; an unknown card gets None ("unknown" in the table).
"""
import re

# (pattern on the device name, label, bf16 dense TFLOP/s, HBM TB/s)
CARDS = [
    (r"H200 NVL", "H200 NVL", 835.0, 4.8),
    (r"H200", "H200 SXM", 989.0, 4.8),
    (r"H100 NVL", "H100 NVL", 835.0, 3.9),
    (r"H100 PCIe", "H100 PCIe", 756.0, 2.0),
    (r"H100", "H100 SXM", 989.0, 3.35),  # "NVIDIA H100 80GB HBM3"
    (r"A100.*80GB PCIe", "A100 80GB PCIe", 312.0, 1.935),
    (r"A100.*80GB", "A100 SXM 80GB", 312.0, 2.039),
    (r"A100", "A100 40GB", 312.0, 1.555),
]


def lookup(name):
    """{"label", "bf16_tflops", "hbm_tbps"}; the values are None for an unknown card."""
    for pattern, label, tflops, tbps in CARDS:
        if name and re.search(pattern, name):
            return {"label": label, "bf16_tflops": tflops, "hbm_tbps": tbps}
    return {"label": "unknown", "bf16_tflops": None, "hbm_tbps": None}

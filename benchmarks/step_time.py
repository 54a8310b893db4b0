"""Training-step time per loss relative to BCE, and (with CUDA) images/s in bf16 autocast vs fp32 eager.

Part 1 (any device): one model, one synthetic batch, one AdamW optimizer; a training step is forward
(``forward_all``) + loss + backward + optimizer step. Losses are timed round-robin (every repeat runs each loss
once, so machine-load drift hits all of them alike) after warm-up; the figure is the median over repeats and
its ratio to BCE's. Part 1b times the loss alone (forward + backward on fixed logits, median of many calls),
which is the precise measure of a loss's overhead; it is reported as a fraction of the BCE step.
Part 2 (CUDA only; skipped with a message on CPU): training images/s for lu_vit_small and densenet121 at
224 px, fp32 eager vs bf16 autocast, channels_last.

Usage::

    python benchmarks/step_time.py                      # lu_vit_small, 224 px, batch 4 (CPU default)
    python benchmarks/step_time.py --model lu_vit_tiny_test --img-size 64 --batch 16
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import torch

from repgls import create_loss, create_model
from repgls.losses import MaskedLoss

LOSS_SPECS: dict[str, dict] = {
    "bce": {},
    "focal": {},
    "gls": {},
    "pce": {},
    "anr": {"counts": True},
    "db": {"counts": True},
    "lla(anr)": {"name": "lla", "counts": True, "base": "anr"},
    "llm(gls)": {"name": "llm", "base": "gls"},
    "luvit": {"rate": True},
}


def _build_losses(k: int, n: int, counts: torch.Tensor) -> dict[str, MaskedLoss]:
    out = {}
    for label, spec in LOSS_SPECS.items():
        kw = {"base": spec["base"]} if "base" in spec else {}
        cc = (counts, n) if spec.get("counts") else (None, None)
        loss = create_loss(spec.get("name", label), *cc, **kw)
        if hasattr(loss, "set_epoch"):
            loss.set_epoch(2)  # LLR active (k = 20 % of the batch's entries)
        out[label] = loss
    return out


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def _batch(b: int, k: int, device: torch.device, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    y = (torch.rand(b, k, generator=g) < 0.3).float()
    r = torch.rand(b, k, generator=g) * 1.6 - 0.8
    mask = (torch.rand(b, k, generator=g) > 0.05).float()
    return {"y": y.to(device), "r": r.to(device), "mask": mask.to(device)}


def step_times(args: argparse.Namespace, device: torch.device) -> None:
    torch.manual_seed(0)
    k = args.classes
    model = create_model(args.model, k, img_size=args.img_size).to(device).train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-5)
    x = torch.randn(args.batch, 1, args.img_size, args.img_size, device=device)
    batch = _batch(args.batch, k, device)
    counts = torch.linspace(5, 500, k)
    losses = {n: m.to(device) for n, m in _build_losses(k, 1000, counts).items()}
    has_rate = hasattr(model, "rate_head")
    if not has_rate:
        losses.pop("luvit")

    def step(loss: MaskedLoss) -> float:
        _sync(device)
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        loss(model.forward_all(x), batch).backward()
        opt.step()
        _sync(device)
        return time.perf_counter() - t0

    print(
        f"# step time: model={args.model} img={args.img_size} batch={args.batch} K={k} device={device} "
        f"threads={torch.get_num_threads()} warmup={args.warmup} repeats={args.repeats}"
    )
    for _ in range(args.warmup):
        for loss in losses.values():
            step(loss)
    times: dict[str, list[float]] = {n: [] for n in losses}
    for _ in range(args.repeats):
        for n, loss in losses.items():
            times[n].append(step(loss))
    ref = statistics.median(times["bce"])
    print(f"{'loss':<10} {'median ms':>10} {'vs bce':>8} {'min ms':>9} {'max ms':>9}")
    for n, ts in times.items():
        med = statistics.median(ts)
        print(f"{n:<10} {med * 1e3:10.1f} {med / ref - 1:+8.1%} {min(ts) * 1e3:9.1f} {max(ts) * 1e3:9.1f}")

    # loss alone: forward + backward on fixed logits
    g = torch.Generator().manual_seed(1)
    z = (torch.randn(args.batch, k, generator=g) * 2).to(device).requires_grad_(True)
    rate = torch.tanh(torch.randn(args.batch, k, generator=g)).to(device).requires_grad_(True)
    outs = {"logits": z, "rate": rate}
    print(
        f"# loss alone (fwd+bwd on [{args.batch}, {k}] logits), median of {args.loss_calls} calls; "
        "overhead = (loss - bce loss) / bce step"
    )
    alone: dict[str, float] = {}
    for n, loss in losses.items():
        ts = []
        for i in range(args.loss_calls + 10):
            _sync(device)
            t0 = time.perf_counter()
            loss(outs, batch).backward()
            _sync(device)
            if i >= 10:
                ts.append(time.perf_counter() - t0)
        alone[n] = statistics.median(ts)
    for n, t in alone.items():
        print(f"{n:<10} {t * 1e6:9.0f} us  overhead {(t - alone['bce']) / ref:+7.2%} of a bce step")


def _images_per_s(name: str, bf16: bool, batch_size: int, steps: int) -> float:
    device = torch.device("cuda")
    torch.manual_seed(0)
    model = create_model(name, 14).to(device).to(memory_format=torch.channels_last).train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-5)
    loss_fn = create_loss("luvit" if name.startswith("lu_") else "gls")
    x = torch.randn(batch_size, 1, 224, 224, device=device).to(memory_format=torch.channels_last)
    batch = _batch(batch_size, 14, device)

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=bf16):
            out = model.forward_all(x)
        loss_fn(out, batch).backward()
        opt.step()

    for _ in range(5):
        step()
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    torch.cuda.synchronize()
    return batch_size * steps / (time.perf_counter() - t0)


def gpu_throughput(args: argparse.Namespace) -> None:
    if not torch.cuda.is_available():
        print("# images/s (bf16 autocast vs fp32 eager): skipped, CUDA not available")
        return
    torch.backends.cuda.matmul.allow_tf32 = False  # fp32 eager means true fp32
    torch.backends.cudnn.allow_tf32 = False
    print(
        f"# training images/s at 224 px, batch {args.gpu_batch}, channels_last, {torch.cuda.get_device_name()}"
    )
    for name in ("lu_vit_small", "densenet121"):
        for mode in ("fp32", "bf16"):
            ips = _images_per_s(name, mode == "bf16", args.gpu_batch, args.gpu_steps)
            print(f"{name:<14} {mode:<5} {ips:9.0f} img/s")
            torch.cuda.empty_cache()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", default="lu_vit_small")
    p.add_argument("--img-size", type=int, default=224)
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--classes", type=int, default=14)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--loss-calls", type=int, default=200)
    p.add_argument("--gpu-batch", type=int, default=128)
    p.add_argument("--gpu-steps", type=int, default=20)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--skip-gpu", action="store_true", help="skip the images/s part")
    args = p.parse_args()
    sys.stdout.reconfigure(line_buffering=True)  # figures appear as they are measured
    step_times(args, torch.device(args.device))
    if not args.skip_gpu:
        gpu_throughput(args)


if __name__ == "__main__":
    main()

"""Training-step speed and peak memory of the transformer methods against a materialized reference.

For each of sat, ts_cam, scm (those registered), one training step = forward, loss, backward, AdamW
step, timed after one warm-up step. The reference has the same weights and
materializes the full N×N attention, as the official code does:

- sat: written here as the official module (`Model/SAT.py` in wpy1999/SAT) computes it: explicit softmax(QKᵀ/√d),
  the spatial-token mask computed in *every* block, post-softmax key columns scaled in the last K;
- others: the same module with `F.scaled_dot_product_attention` replaced by explicit
  softmax(QKᵀ/√d)·V.

Before timing, outputs (logits, maps, loss terms) and gradients of both are checked to agree
within 1e-4 (eval mode, fp32). Peak memory is torch.cuda.max_memory_allocated on GPU; on CPU the
peak of the allocator total the torch profiler records during one step (profile_memory=True),
counted from the start of the step, so parameters and optimizer state are excluded. GFLOP/s is
the step's FLOPs (torch.utils.flop_counter, each implementation its own) over the step time (the
fastest of --steps steps, fused and reference alternating), next to this machine's measured fp32
matmul GFLOP/s.

    python benchmarks/model_speed.py --model deit_small_patch16_224 --img-size 224 --batch 16 --steps 2
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import time
from collections.abc import Callable, Iterator

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch._C._profiler import _EventType
from torch.utils.flop_counter import FlopCounterMode

import wsolbench
from wsolbench.contracts.method import MethodOutput
from wsolbench.registry import METHODS

TRANSFORMER_METHODS = ("sat", "ts_cam", "scm")


# --------------------------------------------------------------------------- references


class MaterializedSAT(nn.Module):
    """SAT as the official code computes it (`Model/SAT.py`), sharing nothing with methods/_vit.py."""

    def __init__(self, sat: nn.Module) -> None:
        super().__init__()
        self.sat = sat

    def forward(self, images: Tensor) -> MethodOutput:
        sat = self.sat
        x = sat.tokens(images)
        B, N, D = x.shape
        first_spatial = sat.depth - sat.spatial_blocks
        masks = []
        for index, block in enumerate(sat.backbone.blocks):
            attn = block.attn
            h = block.norm1(x)
            qkv = attn.qkv(h).reshape(B, N, 3, attn.num_heads, D // attn.num_heads).permute(2, 0, 3, 1, 4)
            q, k, v = qkv[0], qkv[1], qkv[2]
            logits = (q @ k.transpose(-2, -1)) * attn.scale
            probs = logits.softmax(dim=-1)
            # (B, 1, 1, N), computed in every block as the official code does
            mask = torch.sigmoid(logits[:, :, N - 1 : N, :].mean(dim=1, keepdim=True))
            if index >= first_spatial:
                probs = probs * mask
                masks.append(mask[:, 0, 0])
            out = attn.proj((probs @ v).transpose(1, 2).reshape(B, N, D))
            x = x + block.drop_path1(out)
            x = x + block.drop_path2(block.mlp(block.norm2(x)))
        gh, gw = sat.grid_size
        maps = torch.stack(masks).mean(0)[:, 1 : 1 + sat.num_patches].reshape(B, gh, gw)
        feats = sat.backbone.norm(x)[:, 1 : 1 + sat.num_patches].transpose(1, 2).reshape(B, D, gh, gw)
        return MethodOutput(sat.head(feats).mean(dim=(2, 3)), {"maps": maps})

    def loss(self, output: MethodOutput, labels: Tensor) -> dict[str, Tensor]:
        return self.sat.loss(output, labels)


def _materialized_sdpa(q, k, v, attn_mask=None, dropout_p=0.0, is_causal=False, scale=None, **_):
    if attn_mask is not None or is_causal or dropout_p:
        raise NotImplementedError("the reference attention supports plain attention only")
    scale = q.shape[-1] ** -0.5 if scale is None else scale
    return ((q @ k.transpose(-2, -1)) * scale).softmax(dim=-1) @ v


class MaterializedAttention(nn.Module):
    """Runs a method with every F.scaled_dot_product_attention call replaced by explicit softmax(QKᵀ)V."""

    def __init__(self, method: nn.Module) -> None:
        super().__init__()
        self.method = method

    @contextlib.contextmanager
    def _patched(self) -> Iterator[None]:
        original = F.scaled_dot_product_attention
        F.scaled_dot_product_attention = _materialized_sdpa
        try:
            yield
        finally:
            F.scaled_dot_product_attention = original

    def forward(self, images: Tensor) -> MethodOutput:
        with self._patched():
            return self.method(images)

    def loss(self, output: MethodOutput, labels: Tensor) -> dict[str, Tensor]:
        with self._patched():
            return self.method.loss(output, labels)


def reference_for(name: str, model: nn.Module) -> nn.Module:
    twin = copy.deepcopy(model)
    return MaterializedSAT(twin) if name == "sat" else MaterializedAttention(twin)


# --------------------------------------------------------------------------- measurement


def check_agreement(model: nn.Module, reference: nn.Module, images: Tensor, labels: Tensor) -> float:
    """Largest absolute difference over logits, maps, loss terms and gradients (eval mode, fp32)."""
    model.eval()
    reference.eval()
    results = []
    for net in (model, reference):
        net.zero_grad(set_to_none=True)
        out = net(images)
        terms = net.loss(out, labels)
        terms["loss"].backward()
        grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in net.parameters()]
        results.append([out.logits, *out.extras.values(), *terms.values(), *grads])
        net.zero_grad(set_to_none=True)
    model.train()
    reference.train()
    return max((a.float() - b.float()).abs().max().item() for a, b in zip(*results, strict=True))


def make_step(net: nn.Module, images: Tensor, labels: Tensor, amp: bool) -> Callable[[], None]:
    params = [p for p in net.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=1e-4, weight_decay=0.05)

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast(images.device.type, dtype=torch.bfloat16, enabled=amp):
            out = net(images)
            loss = net.loss(out, labels)["loss"]
        loss.backward()
        optimizer.step()

    return step


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def time_steps(
    steps: dict[str, Callable[[], None]], repeats: int, device: torch.device
) -> dict[str, tuple[float, float]]:
    """(wall, process CPU) seconds per step of each implementation, each the minimum over `repeats`
    steps taken alternately, so that load from other processes hits both alike (after one warm-up
    step that allocates the AdamW state). CPU seconds sum over threads: a check on a loaded host."""
    times: dict[str, list[tuple[float, float]]] = {impl: [] for impl in steps}
    for step in steps.values():
        step()
    for _ in range(repeats):
        for impl, step in steps.items():
            sync(device)
            wall, cpu = time.perf_counter(), time.process_time()
            step()
            sync(device)
            times[impl].append((time.perf_counter() - wall, time.process_time() - cpu))
    return {impl: (min(w for w, _ in v), min(c for _, c in v)) for impl, v in times.items()}


def _walk(nodes):
    for node in nodes:
        yield node
        yield from _walk(node.children)


def peak_memory(step: Callable[[], None], device: torch.device) -> int:
    """Peak bytes allocated during one step, above what was allocated when it started."""
    if device.type == "cuda":
        sync(device)
        base = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        step()
        sync(device)
        return torch.cuda.max_memory_allocated() - base
    cpu = [torch.profiler.ProfilerActivity.CPU]
    with torch.profiler.profile(activities=cpu, profile_memory=True) as prof:
        step()
    allocs = [
        e.extra_fields.total_allocated
        for e in _walk(prof.profiler.kineto_results.experimental_event_tree())
        if e.typed[0] == _EventType.Allocation and e.extra_fields.device.type == "cpu"
    ]
    return max(allocs, default=0)


def step_flops(step: Callable[[], None]) -> int:
    with FlopCounterMode(display=False) as counter:
        step()
    return counter.get_total_flops()


def matmul_gflops(device: torch.device, size: int = 2048, repeats: int = 5) -> float:
    a = torch.randn(size, size, device=device)
    b = torch.randn(size, size, device=device)
    a @ b
    sync(device)
    start = time.perf_counter()
    for _ in range(repeats):
        a @ b
    sync(device)
    return 2 * size**3 * repeats / (time.perf_counter() - start) / 1e9


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="deit_small_patch16_224")
    parser.add_argument("--img-size", type=int, default=224)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--steps", type=int, default=2, help="timed steps per implementation (min is kept)")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--amp", action="store_true", help="bf16 autocast for both implementations")
    parser.add_argument("--methods", default=",".join(TRANSFORMER_METHODS))
    parser.add_argument("--num-classes", type=int, default=200)
    args = parser.parse_args()

    device = torch.device(args.device)
    machine = matmul_gflops(device)
    print(f"device {device}, torch threads {torch.get_num_threads()}, fp32 matmul {machine:.1f} GFLOP/s")
    print(f"{args.model} img {args.img_size} batch {args.batch} steps {args.steps} amp {args.amp}")
    header = (f"{'method':8} {'impl':13} {'s/step':>8} {'cpu s':>8} {'peak MiB':>9} {'GFLOP/step':>10} "
              f"{'GFLOP/s':>8} {'% matmul':>8}")
    for name in args.methods.split(","):
        if name not in METHODS:
            print(f"{name}: not registered, skipped")
            continue
        torch.manual_seed(0)
        model = wsolbench.create_method(
            name, num_classes=args.num_classes, backbone=args.model, img_size=args.img_size
        ).to(device)
        reference = reference_for(name, model).to(device)
        images = torch.randn(args.batch, 3, args.img_size, args.img_size, device=device)
        labels = torch.randint(0, args.num_classes, (args.batch,), device=device)
        diff = check_agreement(model, reference, images[:4], labels[:4])
        status = "OK" if diff <= 1e-4 else "MISMATCH"
        print(f"\n{name}: max |fast - reference| over logits, maps, losses, grads = {diff:.2e} ({status})")
        print(header)
        steps = {impl: make_step(net, images, labels, args.amp)
                 for impl, net in (("fused (ours)", model), ("materialized", reference))}
        seconds = time_steps(steps, args.steps, device)
        peaks = {impl: peak_memory(step, device) for impl, step in steps.items()}
        for impl, step in steps.items():
            flops = step_flops(step)
            wall, cpu = seconds[impl]
            gflops = flops / wall / 1e9
            print(f"{name:8} {impl:13} {wall:8.3f} {cpu:8.3f} {peaks[impl] / 2**20:9.1f} {flops / 1e9:10.1f} "
                  f"{gflops:8.1f} {100 * gflops / machine:7.1f}%")
        fast, ref = "fused (ours)", "materialized"
        print(f"{name}: speed-up {seconds[ref][0] / seconds[fast][0]:.2f}x wall, "
              f"{seconds[ref][1] / seconds[fast][1]:.2f}x CPU time (reference over ours); "
              f"peak memory {peaks[fast] / peaks[ref]:.2f}x of the reference")

if __name__ == "__main__":
    main()

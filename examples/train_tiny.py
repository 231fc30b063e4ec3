#!/usr/bin/env python3
"""A few training steps of a small GPT-2-shaped transformer, marked for `joulebench run`.

Measure it under the setting `joulebench model` chose, and see the prediction beside it:

    joulebench model --preset gpt2 --emit toml gpt2.toml
    joulebench run --settings gpt2.toml --allow-power-changes --allow-clock-changes \
        -- python3 examples/train_tiny.py --micro-batch 8

Needs PyTorch (`pip install torch`) and, to be worth measuring, a CUDA GPU (it runs on
the CPU too, slowly). Its shapes are GPT-2 small's (hidden 768, 12 layers of 12 heads,
MLP 3072, vocabulary 50257, sequence 1024) and it trains in bf16 autocast, so it runs
the step `joulebench model --preset gpt2` composes at bf16 — plus what that prediction
leaves out (norms, activations, the loss, the optimizer, the gaps between kernels).
Keep --micro-batch and the precision at those of the settings file's
`[[model.gpt2]]` entry (`micro_batch`, `precision`) for the comparison to hold.

It marks its phases on the FIFO joulebench names in JOULEBENCH_PHASE_FIFO: `warmup`
for the first steps (compilation, allocator and clock ramp-up), then `train`, with
`tokens N` after each step once its work is done; and it prints `step S tokens=N loss L`,
so `--tokens-pattern 'tokens=(\\d+)'` works as well. Without joulebench it runs as is.
"""

import argparse
import os
import sys


def phase_marker():
    """Writes a line to joulebench's phase FIFO; does nothing outside `joulebench run`."""
    path = os.environ.get("JOULEBENCH_PHASE_FIFO")
    if not path:
        return lambda line: None
    fifo = open(path, "w", buffering=1)  # line-buffered: each mark arrives when written
    return lambda line: fifo.write(line + "\n")


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--steps", type=int, default=30, help="measured steps (default 30)")
    p.add_argument("--warmup-steps", type=int, default=5)
    p.add_argument("--micro-batch", type=int, default=8, help="sequences per step")
    p.add_argument("--seq", type=int, default=1024)
    p.add_argument("--hidden", type=int, default=768)
    p.add_argument("--layers", type=int, default=12)
    p.add_argument("--heads", type=int, default=12)
    p.add_argument("--vocab", type=int, default=50257)
    p.add_argument("--precision", choices=["bf16", "f16", "f32"], default="bf16")
    args = p.parse_args()

    try:
        import torch
        import torch.nn.functional as F
    except ImportError:
        sys.exit("this example needs PyTorch: pip install torch")

    device = "cuda" if torch.cuda.is_available() else "cpu"
    dtype = {"bf16": torch.bfloat16, "f16": torch.float16, "f32": torch.float32}[args.precision]

    class Model(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.tokens = torch.nn.Embedding(args.vocab, args.hidden)
            self.positions = torch.nn.Embedding(args.seq, args.hidden)
            layer = torch.nn.TransformerEncoderLayer(
                args.hidden,
                args.heads,
                dim_feedforward=4 * args.hidden,
                dropout=0.0,
                activation="gelu",
                batch_first=True,
                norm_first=True,
            )
            self.blocks = torch.nn.TransformerEncoder(layer, args.layers, enable_nested_tensor=False)
            self.norm = torch.nn.LayerNorm(args.hidden)
            self.head = torch.nn.Linear(args.hidden, args.vocab, bias=False)
            self.head.weight = self.tokens.weight  # tied, as GPT-2's

        def forward(self, x):
            pos = torch.arange(x.shape[1], device=x.device)
            h = self.tokens(x) + self.positions(pos)
            mask = torch.nn.Transformer.generate_square_subsequent_mask(x.shape[1], device=x.device)
            h = self.blocks(h, mask=mask, is_causal=True)
            return self.head(self.norm(h))

    torch.manual_seed(0)
    model = Model().to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-4)
    scaler = torch.amp.GradScaler(device, enabled=args.precision == "f16")
    tokens_per_step = args.micro_batch * args.seq
    mark = phase_marker()

    def sync():
        if device == "cuda":
            torch.cuda.synchronize()

    mark("warmup")
    for step in range(args.warmup_steps + args.steps):
        if step == args.warmup_steps:
            sync()
            mark("train")
        batch = torch.randint(0, args.vocab, (args.micro_batch, args.seq + 1), device=device)
        with torch.autocast(device, dtype=dtype, enabled=args.precision != "f32"):
            logits = model(batch[:, :-1])
            loss = F.cross_entropy(logits.float().reshape(-1, args.vocab), batch[:, 1:].reshape(-1))
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        optimizer.zero_grad(set_to_none=True)
        sync()  # the step's work is done: its tokens are counted now, not when queued
        mark(f"tokens {tokens_per_step}")
        print(f"step {step} tokens={tokens_per_step} loss {loss.item():.3f}", flush=True)
    mark("end")


if __name__ == "__main__":
    main()

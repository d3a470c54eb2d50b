"""train.py under torchrun with a fault injected, for tests/test_distributed.py (run by torchrun, not by pytest).

    torchrun --nproc_per_node 2 tests/ddp_faults.py OUT NAN_RANK NAN_CALL -- TRAIN.PY ARGS...

On process NAN_RANK, the NAN_CALL-th training forward returns a NaN loss (still attached to the graph, as a real
overflow would be). After every optimizer step (taken or skipped) each process appends to OUT/rank{R}.jsonl whether
the step was skipped and a SHA-256 of its trainable weights, so the test can check that both processes skipped the
same step and kept identical weights. NAN_RANK -1 injects nothing.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import train  # noqa: E402
import training.loop as loop  # noqa: E402
from bridge.vlm import VisionLanguageModel  # noqa: E402


def main() -> int:
    out, nan_rank, nan_call = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
    assert sys.argv[4] == "--"
    rank = int(os.environ.get("RANK", "0"))
    forward, step = VisionLanguageModel.forward, loop.train_step
    calls = 0

    def faulty_forward(self, *args, **kwargs):
        nonlocal calls
        loss = forward(self, *args, **kwargs)
        if self.training and rank == nan_rank:
            calls += 1
            if calls == nan_call:
                return loss * float("nan")
        return loss

    def recorded_step(model, *args, **kwargs):
        result = step(model, *args, **kwargs)
        digest = hashlib.sha256()
        for p in model.parameters():
            if p.requires_grad:
                digest.update(p.detach().cpu().numpy().tobytes())
        with (out / f"rank{rank}.jsonl").open("a") as f:
            f.write(json.dumps({"skipped": result.skipped, "weights": digest.hexdigest()}) + "\n")
        return result

    VisionLanguageModel.forward = faulty_forward
    loop.train_step = recorded_step
    return train.main(sys.argv[5:])


if __name__ == "__main__":
    sys.exit(main())

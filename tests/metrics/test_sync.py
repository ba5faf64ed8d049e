"""Test metrics gathered across DDP ranks (two CPU processes over gloo) equal the single-process ones."""

import os
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from fader_lightning.metrics import AnomalyScoreStore
from fader_lightning.metrics.diagnostics import TestDiagnostics


def batches() -> list[dict[str, torch.Tensor]]:
    generator = torch.Generator().manual_seed(0)
    out = []
    for size in (3, 2, 4):  # uneven: ranks hold different numbers of images
        labels = torch.arange(size) % 2
        gt = torch.zeros(size, 1, 16, 16)
        gt[labels == 1, :, 4:10, 4:10] = 1
        maps = torch.rand(size, 1, 16, 16, generator=generator) + gt
        out.append({"scores": maps.flatten(1).amax(1), "labels": labels, "maps": maps, "gt": gt,
                    "masks": (torch.rand(size, 1, 16, 16, generator=generator) > 0.5).float(),
                    "pred": torch.rand(size, 1, 4, 4, generator=generator),
                    "soft": torch.rand(size, 1, 4, 4, generator=generator),
                    "change": torch.randn(size, generator=generator)})  # fmt: skip
    return out


def fill(store: AnomalyScoreStore, diagnostics: TestDiagnostics, parts: list[dict[str, torch.Tensor]]) -> None:
    for part in parts:
        store.update(part["scores"], part["labels"], part["maps"], part["gt"])
        diagnostics.update(part["maps"], part["masks"], part["gt"], part["labels"], part["pred"], part["soft"],
                           part["change"])  # fmt: skip


def worker(rank: int, port: int, queue: mp.Queue) -> None:
    os.environ.update({"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)})
    dist.init_process_group("gloo", rank=rank, world_size=2)
    try:
        store, diagnostics = AnomalyScoreStore(), TestDiagnostics(patch_size=4)
        parts = batches()
        fill(store, diagnostics, parts[:2] if rank == 0 else parts[2:])
        queue.put((rank, store.compute(), diagnostics.compute()))
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
def test_two_ranks_compute_the_metrics_of_every_image() -> None:
    store, diagnostics = AnomalyScoreStore(), TestDiagnostics(patch_size=4)
    fill(store, diagnostics, batches())
    expected = (store.compute(), diagnostics.compute())
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    context = mp.get_context("spawn")
    queue = context.Queue()
    processes = [context.Process(target=worker, args=(rank, port, queue)) for rank in (0, 1)]
    for process in processes:
        process.start()
    results = [queue.get(timeout=120) for _ in processes]
    for process in processes:
        process.join(timeout=60)
        assert process.exitcode == 0
    for _rank, metrics, figures in results:
        assert metrics == pytest.approx(expected[0], rel=1e-6)
        assert figures == pytest.approx(expected[1], rel=1e-6)

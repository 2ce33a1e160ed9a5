"""The inference service answers a torch model with one intra-op thread."""

from __future__ import annotations

import threading

import torch

from services.inference.loaded import serve_single_threaded


def test_the_scoring_thread_runs_torch_on_one_thread() -> None:
    seen: list[int] = []

    def scoring() -> None:
        torch.set_num_threads(2)
        serve_single_threaded()
        seen.append(torch.get_num_threads())

    before = torch.get_num_threads()
    try:
        thread = threading.Thread(target=scoring)
        thread.start()
        thread.join()
    finally:
        torch.set_num_threads(before)
    assert seen == [1]

"""`BetonLoader`, an ffcv Loader whose epoch also sets the training crops, and `Epoch`, one pass
over it that ends on `stop()` (or on leaving a `with` block) and never hangs on a dead ffcv thread.

ffcv reuses its output buffers: it has batches_ahead + 2 slots, one being filled, and rewrites
a batch's slot as soon as the next batch is taken. Use a batch (or `.clone()` it) before asking
for the next; never keep a list of raw batches, nor a batch past the start of the next epoch
(`keep_buffers_across_epochs`: the slots are the same memory every epoch).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from queue import Empty
from typing import Callable

import torch

from .. import UserError

# Loaders kept to the end of the process (`keep_alive`).
_KEPT_LOADERS: list = []


def keep_alive(loader):
    """Keep an ffcv Loader (or one of ours holding one) until the process ends, and return it.

    Freed earlier, numba's finalizer of its compiled pipeline raises a (harmless, but loud)
    KeyError; the benchmarks and checks make loaders in functions and let them go."""
    _KEPT_LOADERS.append(loader)
    return loader


def keep_buffers_across_epochs(loader) -> None:
    """Make an ffcv Loader allocate its batch slots once, not every epoch.

    ffcv's EpochIterator allocates every op's memory afresh for each epoch (on a GPU machine,
    pinned): at batch 256 of 224-px images that is ~190 MB of output slots to fault in (or
    pin) again per epoch, which on a 1,000-image beton cost the epoch about a tenth of its
    time. The slots are kept while the pipeline's memory requests stay the same (a new
    resolution asks for new ones)."""
    graph = loader.graph
    fresh = graph.allocate_memory
    kept: dict = {}

    def allocate_memory(batch_size, batches_ahead):
        requirements, _ = graph.collect_requirements()
        key = (batch_size, batches_ahead, repr(requirements))  # AllocationQuery: shape, dtype, device
        if key not in kept:
            kept.clear()
            kept[key] = fresh(batch_size, batches_ahead)
        return kept[key]

    graph.allocate_memory = allocate_memory


@dataclass
class BetonLoader:
    loader: object  # ffcv.loader.Loader
    # The image field's first op, which ffcv takes as its decoder. It carries the epoch where it
    # has one (the seeded decoder, the GPU path's bytes op); `set_resolution` sets the output size
    # of the CPU path's decoders.
    decoder: object
    finish: Callable[[torch.Tensor], torch.Tensor] | None = None  # on each image batch, in the consumer's thread
    # A view's labels: parent label -> the view's (beton.label_lookup), applied to each label batch.
    label_map: torch.Tensor | None = None
    _epoch: "Epoch | None" = field(default=None, init=False, repr=False)  # the latest, stopped before the next

    def __iter__(self) -> "Epoch":
        return self.start_epoch()

    def start_epoch(self, cancel: threading.Event | None = None) -> "Epoch":
        """The next epoch's batches (also what iter() gives). The crops' epoch is the epoch of
        the shuffle order ffcv is about to draw (ffcv's Loader.__iter__ uses next_epoch, then
        increments it), written before ffcv's loading thread starts."""
        if self._epoch is not None:
            # Its thread would fill the same slots, decode buffers and work counter as the new one.
            self._epoch.stop()
        self._set_crop_epoch(self.loader.next_epoch)
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            # The slots are last epoch's memory (keep_buffers_across_epochs): copies from them
            # and kernels reading them, on any stream, finish before ffcv's thread rewrites them.
            torch.cuda.synchronize()
        self._epoch = Epoch(iter(self.loader), self.finish, cancel, self.label_map)
        return self._epoch

    @property
    def epoch(self) -> int:
        """The epoch the next iteration runs: its shuffle order and, with the seeded
        decoder, its crops and flips are functions of (seed, epoch)."""
        return self.loader.next_epoch

    def set_epoch(self, epoch: int) -> None:
        """Make the next iteration epoch `epoch` (call before creating its iterator; a resumed
        run calls it with the epoch it resumes at)."""
        self.loader.next_epoch = int(epoch)
        self._set_crop_epoch(epoch)

    def _set_crop_epoch(self, epoch: int) -> None:
        if hasattr(self.decoder, "set_epoch"):  # the seeded decoder; ffcv's own have no epoch
            self.decoder.set_epoch(epoch)

    def __len__(self) -> int:
        return len(self.loader)

    def set_resolution(self, res: int) -> None:
        self.decoder.output_size = (res, res)


class Epoch:
    """One epoch of an ffcv Loader: its batches, and `stop()` to end it, early or not.

    A dead loading thread is an error here, not a hang: ffcv's thread dies without a word when
    its pipeline raises (its traceback is printed), and ffcv's own iterator then waits on its
    queue for ever. `cancel`, when set, ends the iteration while it waits (the GPU path's decode
    thread is stopped that way)."""

    def __init__(
        self,
        ffcv_iterator,
        finish: Callable[[torch.Tensor], torch.Tensor] | None = None,
        cancel: threading.Event | None = None,
        label_map: torch.Tensor | None = None,
    ):
        self.ffcv = ffcv_iterator  # ffcv's EpochIterator, a thread started at its creation
        self.finish = finish
        self.cancel = cancel
        self.label_map = label_map
        self._ended = False
        self._stopped = False  # stop() has run to its end: a second call does nothing

    def __iter__(self):
        return self

    def __next__(self):
        if self._ended:
            raise StopIteration
        queue = self.ffcv.output_queue
        with queue.not_empty:  # the queue's own lock and condition: woken by every put
            while not queue.queue:
                if self.cancel is not None and self.cancel.is_set():
                    raise StopIteration
                if not self.ffcv.is_alive():
                    self._ended = True
                    raise UserError(
                        "ffcv's loading thread stopped before the end of the epoch (its traceback is above)"
                    )
                queue.not_empty.wait(timeout=0.5)
        try:  # a batch or ffcv's end marker is queued, and only this iterator takes from the queue
            images, labels = next(self.ffcv)
        except StopIteration:
            self._ended = True
            raise
        if self.label_map is not None:  # a new tensor: ffcv's label buffer is not written
            if self.label_map.device != labels.device:
                self.label_map = self.label_map.to(labels.device)
            labels = self.label_map[labels.long()].to(labels.dtype)
        return (images if self.finish is None else self.finish(images)), labels

    def __enter__(self) -> "Epoch":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def stop(self) -> None:
        """Let ffcv's loading thread see its stop flag and exit before its memory is released
        (ffcv's own close() releases first, which can race with a batch in flight).

        ffcv's thread, once it has produced the epoch's last batch, blocks on putting its end
        marker into a full queue with no timeout, deaf to the stop flag; emptying the queue lets
        it finish. (Left alone, it held every early stop whose remaining batches fit in the
        queue for the full minute, and then stayed blocked.) A dead thread needs no waiting."""
        if self._stopped:
            return
        self._ended = True
        iterator = self.ffcv
        iterator.terminate_event.set()
        queue = iterator.output_queue
        deadline = time.monotonic() + 60
        while iterator.is_alive() and time.monotonic() < deadline:
            while not queue.empty():
                try:
                    queue.get_nowait()
                except Empty:
                    break
            iterator.join(timeout=0.05)
        if iterator.is_alive():  # its memory stays: the thread may still write it
            raise RuntimeError("ffcv's loading thread did not stop within 60 s of being asked")
        iterator.close()
        self._stopped = True

"""The GPU data path's loader (`data.decode: gpu`): ffcv workers copy bytes, the device decodes.

`DeviceDecodeLoader` wraps a `BetonLoader` whose ffcv Loader runs `jpeg_bytes.CompressedImageBytes`
on the image field and leaves labels on the CPU (as timm's PrefetchLoader wraps a loader: length,
epoch and `set_epoch` are the inner loader's), and has its interface (iterate, `start_epoch`,
`set_epoch`, `set_resolution`), so the trainer, the evaluation and the bench use either without
knowing which. A background thread turns each batch into the model's input with
`device_decode.images_from_rows` while the caller trains on the previous one.

Overlap and streams. On a GPU the thread issues its work on a side CUDA stream and hands each
batch over with an event; the consumer's stream waits for that event (the host does not) and
the batch's tensors are marked as used on the consumer's stream, so the caching allocator keeps
them until the step that reads them is done. `queue_depth` batches wait ready ahead.

ffcv's buffers. ffcv may overwrite a batch's pinned buffer once the next one is taken. The
thread reads a batch's buffer only synchronously (torchvision's decode returns after its
stream is synchronised, raw pixels are copied with blocking copies, labels are copied on the
host first), so by the time it asks ffcv for the next batch nothing still reads the previous
one. Small arrays (labels, boxes, indices) travel by non-blocking copies from pinned memory
(`device_decode.to_device`), so the thread waits for its own stream only before the decode
call, never mid-batch. One side stream per loader, for all its epochs: the caching allocator
keeps freed memory per stream, so a new stream each epoch would strand the last one's.
"""

from __future__ import annotations

import threading
from contextlib import nullcontext
from dataclasses import dataclass, field
from queue import Empty, Full, Queue

import torch

from ..beton_loader import BetonLoader
from .device_decode import DecodeCounts, images_from_rows, to_device
from .jpeg_bytes import read_headers

_END = object()


@dataclass
class DeviceDecodeLoader:
    source: BetonLoader  # ffcv's rows of stored bytes and the labels, its decoder the bytes op
    device: torch.device = torch.device("cpu")
    size: tuple[int, int] = (224, 224)
    dtype: torch.dtype = torch.float16  # of the images handed out
    queue_depth: int = 2
    counts: DecodeCounts = field(default_factory=DecodeCounts)  # summed over every batch handed out
    _stream: object = None  # the side CUDA stream, made at the first epoch

    def __iter__(self) -> "DecodingIterator":
        return self.start_epoch()

    def start_epoch(self) -> "DecodingIterator":
        """The next epoch's batches (also what iter() gives); `stop()` ends them."""
        if self._stream is None and self.device.type == "cuda":
            # From the high-priority pool: torch hands out 32 streams per priority round-robin and
            # ffcv's EpochIterator takes five new default-priority ones every epoch, so a
            # default-priority side stream would, every few epochs, be one of ffcv's, and a host
            # wait on one would block on the other. ffcv never asks for priority -1.
            self._stream = torch.cuda.Stream(self.device, priority=-1)
        return DecodingIterator(
            self.source, self.device, self.size, self.dtype, self.queue_depth, self.counts, self._stream
        )

    @property
    def epoch(self) -> int:
        return self.source.epoch

    def set_epoch(self, epoch: int) -> None:
        self.source.set_epoch(epoch)

    def __len__(self) -> int:
        return len(self.source)

    def set_resolution(self, res: int) -> None:
        self.size = (res, res)


class DecodingIterator:
    """One epoch: a thread decodes ahead of the consumer. `stop()` ends it, early or not, and
    quickly also when ffcv's loading thread has died."""

    def __init__(
        self,
        source: BetonLoader,
        device: torch.device,
        size: tuple[int, int],
        dtype: torch.dtype,
        depth: int,
        counts: DecodeCounts,
        stream=None,
    ):
        self.device, self.size, self.dtype = device, size, dtype
        self.counts = counts
        self.queue: Queue = Queue(maxsize=max(1, depth))
        self.terminate_event = threading.Event()
        # ffcv's epoch: a dead loading thread raises there (the decode thread hands it on), and
        # terminate_event ends its waits, so the decode thread never blocks on ffcv for long.
        self.inner = source.start_epoch(cancel=self.terminate_event)
        self.stream = stream  # a CUDA stream, or None on the CPU
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="device-decode", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            with torch.cuda.stream(self.stream) if self.stream is not None else nullcontext():
                for rows, labels in self.inner:
                    if self.terminate_event.is_set():
                        return
                    labels = to_device(labels.numpy(), self.device)  # copied: ffcv reuses its buffer
                    images, counts = images_from_rows(rows, read_headers(rows), self.device, self.size, self.dtype)
                    event = None
                    if self.stream is not None:
                        event = torch.cuda.Event()
                        event.record(self.stream)
                    if not self._put((images, labels, event, counts)):
                        return
            self._put(_END)
        except BaseException as e:  # handed to the consumer, raised there
            self._put(e)

    def _put(self, item) -> bool:
        while not self.terminate_event.is_set():
            try:
                self.queue.put(item, timeout=0.1)
                return True
            except Full:
                pass
        return False

    def __iter__(self):
        return self

    def __next__(self):
        while True:
            try:
                item = self.queue.get(timeout=0.5)
                break
            except Empty:
                if not self._thread.is_alive() and self.queue.empty():
                    raise StopIteration from None
        if item is _END:
            raise StopIteration
        if isinstance(item, BaseException):
            raise item
        images, labels, event, counts = item
        self.counts.add(counts)
        if event is not None:
            consumer = torch.cuda.current_stream(self.device)
            consumer.wait_event(event)
            images.record_stream(consumer)
            labels.record_stream(consumer)
        return images, labels

    def __enter__(self) -> "DecodingIterator":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def is_alive(self) -> bool:
        return self._thread.is_alive()

    def stop(self) -> None:
        """Stop the decode thread (it sees terminate_event within 0.5 s, or after the batch it
        is decoding), then ffcv's epoch: one consumer of ffcv's queue at a time."""
        self.terminate_event.set()
        if not self._closed:
            self._closed = True
            self._thread.join(timeout=60)
            self.inner.stop()

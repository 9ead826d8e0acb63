"""Source JPEGs stored as they come (writers/jpeg_passthrough.py): the frame header read from the
bytes, which files qualify, and an iNat beton whose photos are the original files byte for byte
and load like re-encoded ones."""

import io
from dataclasses import replace

import numpy as np
import pytest
import torch
from PIL import Image

from ffcv_inat.beton import read_manifest
from ffcv_inat.inat import split_samples
from ffcv_inat.loader import make_loader
from ffcv_inat.writers.beton import WriteOptions
from ffcv_inat.writers.inat import write_inat_mini_a
from ffcv_inat.writers.jpeg_passthrough import BASELINE, jpeg_header, passes_through
from helpers.betons import stored_image_bytes


def jpeg(size=(40, 30), mode="RGB", **save) -> bytes:
    buf = io.BytesIO()
    Image.new(mode, size, 128).save(buf, "JPEG", **save)
    return buf.getvalue()


def test_the_frame_header_is_read_from_the_bytes():
    assert jpeg_header(jpeg()) == (BASELINE, 40, 30, 3)
    exif = Image.Exif()
    exif[0x010F] = "camera maker " * 50  # an APP1 segment before the frame header
    assert jpeg_header(jpeg((33, 61), exif=exif.tobytes())) == (BASELINE, 33, 61, 3)
    assert jpeg_header(jpeg(progressive=True)).frame == 0xC2
    assert jpeg_header(jpeg(mode="L")).components == 1
    assert jpeg_header(jpeg(mode="CMYK")).components == 4
    assert jpeg_header(b"\x89PNG\r\n") is None and jpeg_header(jpeg()[:20]) is None


def test_only_baseline_colour_jpegs_within_max_res_pass_through():
    assert passes_through(jpeg_header(jpeg((500, 375))), 500)
    assert not passes_through(jpeg_header(jpeg((501, 375))), 500)  # must shrink: re-encoded
    assert not passes_through(jpeg_header(jpeg(progressive=True)), 500)
    assert not passes_through(jpeg_header(jpeg(mode="L")), 500)
    assert not passes_through(None, 500)


@pytest.mark.timeout(180)
def test_inat_photos_are_stored_byte_for_byte_and_load_like_re_encoded_ones(inat_dir, tmp_path):
    opts = WriteOptions(max_res=512, workers=1)
    through = tmp_path / "through.beton"
    m = write_inat_mini_a(inat_dir, "val", through, opts)
    assert m.write_options["pass_through"] is True
    assert m.notes["stored_as_they_came"] == m.num_images and m.notes["re_encoded"] == 0
    categories, groups, _ = split_samples(inat_dir, "val")
    originals = [(inat_dir / s.path).read_bytes() for c in categories for s in groups[c.id]]
    assert stored_image_bytes(through) == originals  # the files themselves, in sample order
    # the room check's estimate counts them at their own size, not at a re-encode's
    from ffcv_inat.writers.beton import _ffcv_fields, page_size_for
    from ffcv_inat.writers.beton_size import estimate_beton_bytes

    paths = [str(inat_dir / s.path) for c in categories for s in groups[c.id]]
    on = replace(opts, pass_through=True)
    estimate = estimate_beton_bytes(paths, on, _ffcv_fields(on), page_size_for(len(paths), opts.max_res))
    assert estimate.per_image == pytest.approx(np.mean([len(o) for o in originals]), rel=0.3)

    # The same photos re-encoded at quality 90 (the pass-through off) load to nearly the same pixels.
    from ffcv_inat.writers import beton as beton_writer

    again = tmp_path / "again.beton"
    samples = [(str(inat_dir / s.path), label) for label, c in enumerate(categories) for s in groups[c.id]]
    classes = [beton_writer.ClassInfo(str(c.id), c.name, c.supercategory) for c in categories]
    contents = beton_writer.BetonContents("inat-mini-a", "val", "A")
    beton_writer.write_beton(again, samples, classes, contents, replace(opts, pass_through=False))
    assert "stored_as_they_came" not in read_manifest(again).notes
    batches = []
    for b in (through, again):
        loader = make_loader(b, batch_size=8, res=32, train=False, device=torch.device("cpu"), workers=1)
        batches.append(next(iter(loader)))
    assert torch.equal(batches[0][1], batches[1][1])
    # normalised pixels: a q90 re-encode of these noisy photos moves them ~3 of 255 grey levels on average
    assert (batches[0][0].float() - batches[1][0].float()).abs().mean() < 0.1


def test_the_grayscale_photo_is_re_encoded_and_counted(inat_dir, tmp_path):
    m = write_inat_mini_a(inat_dir, "train", tmp_path / "train.beton", WriteOptions(max_res=512, workers=1))
    # inat_dir's first species has a grayscale train_mini photo (and a truncated one, skipped)
    assert m.notes["re_encoded"] == 1 and m.notes["stored_as_they_came"] == m.num_images - 1

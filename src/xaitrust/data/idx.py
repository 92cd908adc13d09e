"""Reader for gzip-compressed IDX files, the format of MNIST and Fashion-MNIST.

Format (LeCun et al., http://yann.lecun.com/exdb/mnist/): a big-endian 32-bit magic number whose third byte is the
element type (0x08 = unsigned byte) and whose fourth byte is the number of dimensions ``d``; then ``d`` big-endian
32-bit sizes; then ``prod(sizes)`` elements in C order. Unsigned-byte images have magic 2051 (0x0803, 3 dimensions),
labels 2049 (0x0801, 1 dimension).
"""

from __future__ import annotations

import gzip
import zlib
from pathlib import Path

import numpy as np

from ..errors import XaitrustError

IMAGES_MAGIC = 2051
LABELS_MAGIC = 2049


def read_idx_gz(path: str | Path, magic: int) -> np.ndarray:
    """The uint8 array stored in the gzip-compressed IDX file ``path``, whose magic number must be ``magic``.

    Raises ``XaitrustError`` naming the file when it is not valid gzip, its magic number differs, a size is zero or
    the payload length does not match the header.
    """
    path = Path(path)
    try:
        with gzip.open(path, "rb") as handle:
            data = handle.read()
    except (OSError, EOFError, zlib.error) as error:
        raise XaitrustError(f"{path} is not a readable gzip file ({error}); download it again") from None
    ndim = magic & 0xFF
    header_length = 4 + 4 * ndim
    if len(data) < header_length:
        raise XaitrustError(f"{path} is truncated: {len(data)} bytes, shorter than its {header_length}-byte IDX header")
    header = np.frombuffer(data, dtype=">u4", count=1 + ndim)
    if int(header[0]) != magic:
        raise XaitrustError(f"{path} has IDX magic number {int(header[0])}, expected {magic}; is it the right file?")
    shape = tuple(int(size) for size in header[1:])
    if min(shape) == 0:
        raise XaitrustError(f"{path} declares an empty array of shape {shape}")
    expected = int(np.prod(shape))
    payload = len(data) - header_length
    if payload != expected:
        raise XaitrustError(
            f"{path} holds {payload} bytes of data but its header declares shape {shape} ({expected} bytes); "
            "the file is truncated or corrupt, download it again"
        )
    return np.frombuffer(data, dtype=np.uint8, offset=header_length).reshape(shape)


def write_idx_gz(path: str | Path, array: np.ndarray) -> Path:
    """Write a uint8 array of 1 or 3 dimensions as a gzip-compressed IDX file (the inverse of ``read_idx_gz``)."""
    array = np.ascontiguousarray(array, dtype=np.uint8)
    header = np.array([0x0800 | array.ndim, *array.shape], dtype=">u4").tobytes()
    path = Path(path)
    with gzip.open(path, "wb") as handle:
        handle.write(header + array.tobytes())
    return path

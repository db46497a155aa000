"""Weights as safetensors files, read and written with torch alone.

The format (huggingface/safetensors): an 8-byte little-endian header length, a JSON header mapping each tensor's
name to its dtype, shape and byte range (plus an optional "__metadata__" of strings), then the raw bytes. Nothing in
it is code, so loading runs nothing from the file. Writing it here keeps an exported package free of any other
dependency; files it writes load with the safetensors library and Hugging Face's `from_pretrained`.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

import torch
from torch import nn

DTYPES = {
    "F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
    "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8, "U8": torch.uint8,
    "BOOL": torch.bool,
}
NAMES = {dtype: name for name, dtype in DTYPES.items()}
MAX_HEADER_BYTES = 100 * 2**20  # the library's own cap: a header past it is a damaged or foreign file
ALIGNMENT = 8  # the header is padded with spaces so that the data starts on an 8-byte boundary


class WeightsError(ValueError):
    """A weights file that is not safetensors, or whose tensors do not fit the model."""


def save_file(tensors: dict[str, torch.Tensor], path: str | Path, metadata: dict[str, str] | None = None) -> None:
    """Write `tensors` (name -> tensor, any device) to `path`; metadata: string pairs kept in the header."""
    header: dict = {"__metadata__": dict(metadata)} if metadata else {}
    blobs, offset = [], 0
    for name in sorted(tensors):
        tensor = tensors[name].detach()
        if tensor.dtype not in NAMES:
            raise WeightsError(f"tensor {name!r}: dtype {tensor.dtype} has no safetensors name")
        blob = tensor.contiguous().cpu().reshape(-1).view(torch.uint8).numpy().tobytes()
        header[name] = {"dtype": NAMES[tensor.dtype], "shape": list(tensor.shape),
                        "data_offsets": [offset, offset + len(blob)]}
        blobs.append(blob)
        offset += len(blob)
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % ALIGNMENT)
    path = Path(path)
    tmp = path.with_name(path.name + ".partial")
    with open(tmp, "wb") as out:
        out.write(struct.pack("<Q", len(text)))
        out.write(text)
        for blob in blobs:
            out.write(blob)
    tmp.replace(path)  # a reader never sees half a file


def read_header(path: str | Path) -> tuple[dict, int]:
    """(the header's tensor entries and metadata, the byte where the data starts)."""
    path = Path(path)
    size = path.stat().st_size
    with open(path, "rb") as f:
        first = f.read(8)
        if len(first) < 8:
            raise WeightsError(f"{path}: {size} bytes is too short for a safetensors file")
        length = struct.unpack("<Q", first)[0]
        if length > min(MAX_HEADER_BYTES, size - 8):
            raise WeightsError(f"{path}: not a safetensors file (its header would be {length} bytes)")
        try:
            header = json.loads(f.read(length))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise WeightsError(f"{path}: not a safetensors file (its header is not JSON: {exc})") from None
    if not isinstance(header, dict):
        raise WeightsError(f"{path}: not a safetensors file (its header is not a JSON object)")
    return header, 8 + length


def load_file(path: str | Path, device: str | torch.device = "cpu") -> dict[str, torch.Tensor]:
    """Every tensor of a safetensors file, by name."""
    header, start = read_header(path)
    data = Path(path).read_bytes()
    tensors = {}
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        dtype = DTYPES.get(entry.get("dtype")) if isinstance(entry, dict) else None
        if dtype is None:
            raise WeightsError(f"{path}: tensor {name!r} has an unknown dtype {entry!r}")
        begin, end = entry["data_offsets"]
        shape = entry["shape"]
        count = 1
        for dim in shape:
            count *= dim
        if not 0 <= begin <= end <= len(data) - start or end - begin != count * _itemsize(dtype):
            raise WeightsError(f"{path}: tensor {name!r}'s bytes [{begin}, {end}) do not hold shape {shape}")
        raw = bytearray(data[start + begin:start + end])  # a writable copy: torch.frombuffer shares it
        flat = torch.frombuffer(raw, dtype=torch.uint8) if raw else torch.empty(0, dtype=torch.uint8)
        tensors[name] = flat.view(dtype).reshape(shape).to(device)
    return tensors


def _itemsize(dtype: torch.dtype) -> int:
    return torch.empty((), dtype=dtype).element_size()


def state_tensors(model: nn.Module, prefix: str = "") -> dict[str, torch.Tensor]:
    """The model's persistent tensors by name, each name with `prefix` before it."""
    return {prefix + name: tensor for name, tensor in model.state_dict().items()}


def save(model: nn.Module, path: str | Path, metadata: dict[str, str] | None = None, prefix: str = "",
         dtype: torch.dtype | None = None) -> None:
    """Write a model's weights to a safetensors file, optionally cast to `dtype`."""
    tensors = state_tensors(model, prefix)
    if dtype is not None:
        tensors = {name: t.to(dtype) if t.is_floating_point() else t for name, t in tensors.items()}
    save_file(tensors, path, metadata)


def load_weights(model: nn.Module, path: str | Path, prefix: str = "") -> nn.Module:
    """Load a safetensors file into `model`, which must have every tensor of the file and no other: names and
    shapes are checked before anything is copied, and the first mismatch is the error. A file whose names all
    start with `prefix` (a Hugging Face export's "model.") loads with it stripped. Values are cast to each
    parameter's dtype and device."""
    tensors = load_file(path)
    if prefix and tensors and all(name.startswith(prefix) for name in tensors):
        tensors = {name[len(prefix):]: t for name, t in tensors.items()}
    expected = model.state_dict()
    for name in sorted(expected):
        if name not in tensors:
            raise WeightsError(f"{path}: no tensor {name!r}, which the model has {tuple(expected[name].shape)}; "
                               "were these weights saved from another spec?")
        if tuple(tensors[name].shape) != tuple(expected[name].shape):
            raise WeightsError(f"{path}: tensor {name!r} has shape {tuple(tensors[name].shape)}, the model's is "
                               f"{tuple(expected[name].shape)}; were these weights saved from another spec?")
    extra = sorted(set(tensors) - set(expected))
    if extra:
        raise WeightsError(f"{path}: tensor {extra[0]!r} is not in the model ({len(extra)} unknown in all); "
                           "were these weights saved from another spec?")
    model.load_state_dict(tensors)
    return model

"""What every exporter writes the same way: ONNX graphs and safetensors weights."""
import json
import os
import struct

import torch


def export(module, args, path, inputs, outputs, dynamic):
    """torch.onnx.export with the settings every shipped graph uses (opset 17, constants folded)."""
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    torch.onnx.export(module, args, path, input_names=inputs, output_names=outputs,
                      dynamic_axes=dynamic, opset_version=17, do_constant_folding=True)


def save_safetensors(tensors: dict, path: str):
    """The safetensors format: a little-endian u64 header length, a JSON header, raw data."""
    header, offset, blobs = {}, 0, []
    for name, t in tensors.items():
        data = t.detach().contiguous().float().numpy().tobytes()
        header[name] = {"dtype": "F32", "shape": list(t.shape), "data_offsets": [offset, offset + len(data)]}
        offset += len(data)
        blobs.append(data)
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * ((8 - len(raw) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(raw)))
        f.write(raw)
        for b in blobs:
            f.write(b)

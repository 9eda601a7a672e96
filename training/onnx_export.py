"""What every exporter writes the same way: ONNX graphs, safetensors weights, JSON files (configs,
manifests, golden fixtures) and the model card's scores."""
import json
import os
import struct

import torch


def export(module, args, path, inputs, outputs, dynamic):
    """torch.onnx.export with the settings every shipped graph uses (opset 17, constants folded)."""
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    torch.onnx.export(module, args, path, input_names=inputs, output_names=outputs,
                      dynamic_axes=dynamic, opset_version=17, do_constant_folding=True)


def write_json(out: str, name: str, obj) -> None:
    """out/name as indented JSON (a config, manifest or tokenizer file), its folder made if needed."""
    path = f"{out}/{name}"
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    with open(path, "w") as f:
        json.dump(obj, f, indent=2)


def write_fixture(path: str, obj, indent=None) -> None:
    """A golden fixture (compact JSON unless `indent`), its folder made if needed."""
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    with open(path, "w") as f:
        json.dump(obj, f, indent=indent)


def card_scores(path, task: str) -> str:
    """The model card's table of scores: the file that `deno task eval <task>`'s output was saved to
    (--scores), or a note saying how to get one."""
    return open(path).read().strip() if path else f"(run `deno task eval {task}` and export with --scores)"


def n_parameters(*modules) -> int:
    return sum(p.numel() for m in modules for p in m.parameters())


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


def load_safetensors(path: str) -> dict:
    """What save_safetensors wrote (F32 only): name -> tensor."""
    import numpy as np
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    out = {}
    for name, h in header.items():
        if name == "__metadata__":
            continue
        assert h["dtype"] == "F32", f"{name}: {h['dtype']}"
        a, b = h["data_offsets"]
        out[name] = torch.from_numpy(np.frombuffer(data[a:b], dtype="<f4").copy().reshape(h["shape"]))
    return out


def onnx_initializers(path: str) -> dict:
    """A graph's initializers by name, as tensors: the weights of an ONNX export."""
    import onnx
    from onnx import numpy_helper
    return {i.name: torch.from_numpy(numpy_helper.to_array(i).copy()) for i in onnx.load(path).graph.initializer}


def load_onnx_weights(module, args, path, inputs, outputs, dynamic) -> None:
    """Loads a shipped ONNX graph's weights back into `module`, the wrapper it was exported from
    with export(module, args, path, inputs, outputs, dynamic): for the golden fixture of a model
    whose training checkpoint is not kept. Initializers that kept their parameter's name load by
    name; the ones the exporter renamed (a Linear's weight, transposed into a MatMul operand as
    `onnx::MatMul_N`; a GroupNorm's weight, unsqueezed to [C, 1, 1]) are found by exporting `module` again, with distinct random weights, and
    matching the values: the same graph gets the same names. Anything that does not match (another
    graph, another exporter) raises; parameters the graph does not use are left as they are."""
    import tempfile

    import numpy as np
    import onnx
    from onnx import numpy_helper

    def read(p):
        graph = onnx.load(p).graph
        # The graph's shape: its ops in order and the constants they read (shapes, head counts,
        # scales baked in): equal for the same module, config and exporter.
        layout = [(n.op_type, [numpy_helper.to_array(a.t).tolist() for a in n.attribute if a.name == "value"])
                  for n in graph.node]
        return {i.name: numpy_helper.to_array(i) for i in graph.initializer}, layout

    shipped, layout = read(path)
    state = module.state_dict()
    before = {k: v.clone() for k, v in state.items()}
    g = torch.Generator().manual_seed(1234)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.05)
    with tempfile.TemporaryDirectory() as tmp:
        export(module, args, f"{tmp}/probe.onnx", inputs, outputs, dynamic)
        probe, probe_layout = read(f"{tmp}/probe.onnx")
    if set(probe) != set(shipped) or probe_layout != layout:
        raise ValueError(f"{path}: not the graph this module exports "
                         f"({sorted(set(probe) ^ set(shipped))[:6] or 'its nodes'} differ)")
    by_value = {}
    for name, t in state.items():
        a = t.detach().numpy()
        by_value.setdefault((a.shape, a.tobytes()), (name, False))
        if a.ndim == 2:
            by_value.setdefault((a.T.shape, np.ascontiguousarray(a.T).tobytes()), (name, True))
        if a.ndim == 1:  # a GroupNorm's weight and bias, folded into a [C, 1, 1] Mul and Add operand
            by_value.setdefault((a.shape + (1, 1), a.tobytes()), (name, "unsqueezed"))
    loaded = {}
    for init, value in shipped.items():
        if init in state:
            loaded[init] = torch.from_numpy(value.copy())
            continue
        p = probe[init]
        hit = by_value.get((p.shape, np.ascontiguousarray(p).tobytes()))
        if hit is None:
            if not np.array_equal(p, value):  # a folded constant of the graph itself must agree
                raise ValueError(f"{path}: initializer {init} matches no parameter")
            continue
        name, how = hit
        loaded[name] = torch.from_numpy((value.T if how is True else value.reshape(-1) if how else value).copy())
    with torch.no_grad():
        for name, t in state.items():
            value = loaded.get(name, before[name])
            assert t.shape == value.shape, f"{name}: {tuple(value.shape)} in {path}"
            t.copy_(value)


def graph_constant(path: str, op: str) -> float:
    """The scalar Constant that feeds the first `op` node of a graph (a Python float the exporter
    baked in, e.g. a scaling factor)."""
    import onnx
    from onnx import numpy_helper
    graph = onnx.load(path).graph
    constants = {n.output[0]: n for n in graph.node if n.op_type == "Constant"}
    for n in graph.node:
        if n.op_type == op:
            for i in n.input:
                if i in constants:
                    return float(numpy_helper.to_array(constants[i].attribute[0].t))
    raise ValueError(f"{path}: no {op} with a constant operand")


def golden_values(t, limit: int = 2048) -> dict:
    """A tensor for a golden fixture, kept small: its shape, every `stride`-th value of the
    flattened tensor (stride 1 when it has at most `limit` values) and its mean |value| (a
    checksum over all of it). 7 significant digits: float32's own precision."""
    flat = t.detach().float().flatten()
    stride = max(1, -(-flat.numel() // limit))
    return {"shape": list(t.shape), "stride": stride,
            "values": [float(f"{v:.7g}") for v in flat[::stride].tolist()],
            "mean_abs": float(f"{flat.abs().mean().item():.7g}")}

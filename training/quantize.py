"""Dynamic int8 quantization of an exported ONNX graph, written as transformers.js' q8 file
(`onnx/<name>_quantized.onnx` beside `onnx/<name>.onnx`).

    /usr/bin/python3 training/quantize.py models/embedded/clip-tiny/onnx/vision_model.onnx [...]

Every MatMul whose second input is a constant 2-D weight becomes the pattern ONNX Runtime's own
dynamic quantizer emits: the activations quantized per call (DynamicQuantizeLinear, uint8), the
weights once, here, to int8 per output column (symmetric), an integer MatMulInteger, and the
product rescaled to float. Everything else (attention between activations, norms, convolutions)
stays float. Weights shrink to a quarter; accuracy is the eval's to judge.
"""
import argparse
import os

import numpy as np
import onnx
from onnx import helper, numpy_helper


def quantize(model: onnx.ModelProto) -> tuple:
    graph = model.graph
    weights = {t.name: t for t in graph.initializer}
    nodes, done, used = [], 0, set()
    for node in graph.node:
        w = weights.get(node.input[1]) if node.op_type == "MatMul" else None
        if w is None or len(w.dims) != 2:
            nodes.append(node)
            continue
        W = numpy_helper.to_array(w).astype(np.float32)
        scale = np.maximum(np.abs(W).max(axis=0), 1e-12) / 127.0  # one scale per output column
        Wq = np.clip(np.round(W / scale), -127, 127).astype(np.int8)
        base = f"{node.name or node.output[0]}_q8"
        graph.initializer.extend([
            numpy_helper.from_array(Wq, f"{base}_W"),
            numpy_helper.from_array(np.zeros(W.shape[1], np.int8), f"{base}_Wzp"),
            numpy_helper.from_array(scale.astype(np.float32), f"{base}_Wscale"),
        ])
        a = node.input[0]
        nodes += [
            helper.make_node("DynamicQuantizeLinear", [a], [f"{base}_A", f"{base}_As", f"{base}_Azp"]),
            helper.make_node("MatMulInteger", [f"{base}_A", f"{base}_W", f"{base}_Azp", f"{base}_Wzp"],
                             [f"{base}_Y"]),
            helper.make_node("Cast", [f"{base}_Y"], [f"{base}_Yf"], to=onnx.TensorProto.FLOAT),
            helper.make_node("Mul", [f"{base}_As", f"{base}_Wscale"], [f"{base}_S"]),
            helper.make_node("Mul", [f"{base}_Yf", f"{base}_S"], list(node.output)),
        ]
        used.add(w.name)
        done += 1
    # The float weights that only the quantized MatMuls read are dropped.
    still = {i for n in nodes for i in n.input}
    keep = [t for t in graph.initializer if t.name not in used or t.name in still]
    del graph.initializer[:]
    graph.initializer.extend(keep)
    del graph.node[:]
    graph.node.extend(nodes)
    return model, done


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("models", nargs="+", help="onnx/<name>.onnx files; writes onnx/<name>_quantized.onnx")
    args = ap.parse_args()
    for path in args.models:
        model, n = quantize(onnx.load(path))
        onnx.checker.check_model(model)
        out = path[:-len(".onnx")] + "_quantized.onnx"
        onnx.save(model, out)
        print(f"{out}: {n} MatMuls quantized, {os.path.getsize(path) / 1e6:.2f} -> "
              f"{os.path.getsize(out) / 1e6:.2f} MB")


if __name__ == "__main__":
    main()

/**
 * Graphs whose weights live in a file beside them (ONNX external data, how exports past protobuf's
 * 2 GB limit are written): each backend loads one and computes with the weights from that file.
 * And deferred tensors (data built on first read): each backend's ORT reads them when fed.
 */
import assert from "node:assert/strict";
import { type BackendName, resolveBackend } from "./backend.ts";
import { SessionRegistry } from "./sessions.ts";

const GRAPH = new URL("../tests/fixtures/external-data/model.onnx", import.meta.url).pathname;

for (const name of ["cpu", "wasm"] as BackendName[]) {
  Deno.test(`a graph with external data runs on ${name}`, async () => {
    const sessions = new SessionRegistry(await resolveBackend(name));
    const session = await sessions.load(GRAPH);
    // y = x @ W, W = [[0 1 2] [3 4 5] [6 7 8] [9 10 11]] from model.onnx_data: one-hot rows pick W's rows.
    const x = sessions.tensor("float32", new Float32Array([0, 1, 0, 0, 0, 0, 0, 1]), [2, 4]);
    const { y } = await session.run({ x });
    assert.deepEqual([...y.data as Float32Array], [3, 4, 5, 9, 10, 11]);
  });
  Deno.test(`a deferred tensor is built once, when ${name}'s ORT first reads it`, async () => {
    const sessions = new SessionRegistry(await resolveBackend(name));
    const session = await sessions.load(GRAPH);
    let built = 0;
    const x = sessions.deferredTensor("float32", [2, 4], () => {
      built++;
      return new Float32Array([0, 0, 1, 0, 1, 0, 0, 0]);
    });
    assert.equal(built, 0);
    assert.deepEqual([x.dims, x.size, x.type], [[2, 4], 8, "float32"]);
    const { y } = await session.run({ x });
    assert.deepEqual([...y.data as Float32Array], [6, 7, 8, 0, 1, 2]);
    x.data;
    assert.equal(built, 1);
  });
}

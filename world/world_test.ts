import assert from "node:assert/strict";
import {
  canonicalCaption,
  captionOrder,
  centre,
  isHeldOut,
  objectPhrase,
  positionOf,
  questions,
  referenceSet,
  renderScene,
  rng,
  sampleScenes,
  type Scene,
  VOCABULARY,
  type WorldObject,
} from "./world.ts";

const obj = (o: Partial<WorldObject> & Pick<WorldObject, "x" | "y">): WorldObject => ({
  shape: "circle",
  colour: "red",
  size: "small",
  side: 12,
  ...o,
});

Deno.test("sampleScenes() is deterministic for a seed and differs across seeds and splits", () => {
  const a = sampleScenes({ split: "train", count: 50, seed: 3 });
  assert.deepEqual(a, sampleScenes({ split: "train", count: 50, seed: 3 }));
  assert.notDeepEqual(a, sampleScenes({ split: "train", count: 50, seed: 4 }));
  assert.notDeepEqual(a, sampleScenes({ split: "test", count: 50, seed: 3 }));
  assert.deepEqual(renderScene(a[0], 7), renderScene(a[0], 7));
});

Deno.test("sampleScenes() follows the world's rules", () => {
  for (const split of ["train", "val", "test", "heldout"] as const) {
    for (const s of sampleScenes({ split, count: 300, seed: 1 })) {
      assert.ok(s.objects.length >= 1 && s.objects.length <= 3);
      for (const o of s.objects) {
        assert.ok(o.size === "small" ? o.side >= 10 && o.side <= 13 : o.side >= 20 && o.side <= 26);
        assert.ok(o.x >= 0 && o.y >= 0 && o.x + o.side <= 64 && o.y + o.side <= 64);
      }
      for (const [i, a] of s.objects.entries()) {
        for (const b of s.objects.slice(i + 1)) {
          assert.ok(
            !(a.colour === b.colour && a.shape === b.shape),
            "no two objects share colour and shape",
          );
          const gx = Math.max(a.x - (b.x + b.side), b.x - (a.x + a.side));
          const gy = Math.max(a.y - (b.y + b.side), b.y - (a.y + a.side));
          assert.ok(gx >= 2 || gy >= 2, "boxes at least 2 px apart on one axis");
        }
      }
      const held = s.objects.filter(isHeldOut).length;
      if (split === "heldout") assert.ok(held >= 1, "held-out split always shows a held-out pair");
      else assert.equal(held, 0, `${split} never shows a held-out pair`);
    }
  }
});

Deno.test("renderScene() paints the background and the objects' colours, with noise within ±8", () => {
  const scene: Scene = {
    background: "gray",
    objects: [obj({ x: 20, y: 20, side: 24, shape: "square", colour: "blue" })],
  };
  const clean = renderScene(scene);
  const px = (
    img: Uint8Array,
    x: number,
    y: number,
  ) => [...img.subarray((y * 64 + x) * 3, (y * 64 + x) * 3 + 3)];
  assert.deepEqual(px(clean, 2, 2), [128, 128, 128]);
  assert.deepEqual(px(clean, 32, 32), [40, 80, 220]);
  const noisy = renderScene(scene, 99);
  assert.ok(noisy.every((v, i) => Math.abs(v - clean[i]) <= 8));
  assert.ok(noisy.some((v, i) => v !== clean[i]));
});

Deno.test("positionOf() uses the 3 × 3 grid cell of the box centre", () => {
  assert.equal(positionOf(obj({ x: 0, y: 0 })), "top left");
  assert.equal(positionOf(obj({ x: 26, y: 26 })), "center");
  assert.equal(positionOf(obj({ x: 52, y: 30 })), "right");
  assert.equal(positionOf(obj({ x: 30, y: 52 })), "bottom");
});

Deno.test("objectPhrase() writes 'an' only before 'orange'", () => {
  assert.equal(
    objectPhrase({ size: "small", colour: "orange", shape: "circle" }),
    "a small orange circle",
  );
  assert.equal(
    objectPhrase({ size: "small", colour: "orange", shape: "circle" }, false),
    "an orange circle",
  );
  assert.equal(
    objectPhrase({ size: "large", colour: "red", shape: "diamond" }, false),
    "a red diamond",
  );
});

Deno.test("canonicalCaption() follows the three templates", () => {
  const one: Scene = { background: "black", objects: [obj({ x: 0, y: 0 })] };
  assert.equal(canonicalCaption(one), "a small red circle in the top left on a black background");
  const left = obj({ x: 40, y: 10, colour: "blue", shape: "square", size: "large", side: 20 });
  const two: Scene = { background: "white", objects: [left, obj({ x: 5, y: 40 })] };
  assert.equal(
    canonicalCaption(two),
    "a small red circle to the left of a large blue square on a white background",
  );
  const stacked: Scene = {
    background: "gray",
    objects: [obj({ x: 30, y: 40 }), obj({ x: 28, y: 5, colour: "green" })],
  };
  assert.equal(captionOrder(stacked).relation, "above");
  assert.equal(
    canonicalCaption(stacked),
    "a small green circle above a small red circle on a gray background",
  );
  const three: Scene = {
    background: "black",
    objects: [
      obj({ x: 50, y: 0 }),
      obj({ x: 0, y: 0, colour: "orange" }),
      obj({ x: 25, y: 40, shape: "triangle" }),
    ],
  };
  assert.equal(
    canonicalCaption(three),
    "a small orange circle , a small red triangle and a small red circle on a black background",
  );
});

Deno.test("referenceSet() has the canonical caption and one paraphrase per applicable template", () => {
  const one: Scene = { background: "black", objects: [obj({ x: 0, y: 0, colour: "orange" })] };
  assert.deepEqual(referenceSet(one), [
    "a small orange circle in the top left on a black background",
    "an orange circle in the top left on a black background",
    "a small orange circle in the top left",
    "there is a small orange circle in the top left",
  ]);
  const two: Scene = {
    background: "white",
    objects: [obj({ x: 5, y: 40 }), obj({ x: 40, y: 10, colour: "blue" })],
  };
  const refs = referenceSet(two);
  assert.equal(refs.length, 5);
  assert.ok(
    refs.includes("a small blue circle to the right of a small red circle on a white background"),
  );
  assert.ok(refs.includes("there are two shapes : a small red circle and a small blue circle"));
});

Deno.test("questions() asks only answerable questions and balances yes and no", () => {
  for (const s of sampleScenes({ split: "train", count: 200, seed: 5 })) {
    const qa = questions(s, rng(1), false);
    const yes = qa.filter((q) => q.answer === "yes").length;
    const no = qa.filter((q) => q.answer === "no").length;
    assert.equal(yes, 1);
    assert.ok(no <= 1);
    for (const q of qa) {
      assert.ok(
        !/purple triangle|orange circle/.test(q.question),
        "training questions never name a held-out pair",
      );
      const words = `${q.question} ${q.answer}`.match(/\w+|[^\w\s]/g)!;
      for (const w of words) assert.ok(VOCABULARY.includes(w), `"${w}" is in the vocabulary`);
    }
    const count = qa.find((q) => q.type === "count")!;
    assert.equal(count.answer, ["one", "two", "three"][s.objects.length - 1]);
  }
});

Deno.test("every caption word is in the vocabulary", () => {
  for (const s of sampleScenes({ split: "heldout", count: 200, seed: 2 })) {
    for (const r of referenceSet(s)) {
      for (const w of r.split(" ")) assert.ok(VOCABULARY.includes(w), w);
    }
    assert.ok(centre(s.objects[0])[0] > 0);
  }
});

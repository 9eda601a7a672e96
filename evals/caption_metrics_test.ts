import assert from "node:assert/strict";
import { corpusBleu, corpusMeteor, meteorSentence, stem } from "./caption_metrics.ts";

const close = (a: number, b: number, eps = 1e-6) => assert.ok(Math.abs(a - b) < eps, `${a} ≠ ${b}`);

Deno.test("corpusBleu() matches values worked by hand", () => {
  // cand: the cat sat on the mat; ref: the cat is on the mat.
  // p1 = 5/6, p2 = 3/5, p3 = 1/4, p4 = 0; same length so BP = 1.
  const [b1, b2, b3, b4] = corpusBleu(["the cat sat on the mat"], [["the cat is on the mat"]]);
  close(b1, 5 / 6);
  close(b2, Math.sqrt((5 / 6) * (3 / 5)));
  close(b3, Math.cbrt((5 / 6) * (3 / 5) * (1 / 4)));
  close(b4, 0);
});

Deno.test("corpusBleu() clips counts and applies the brevity penalty", () => {
  // "the the the" against "the cat": clipped unigram precision 1/3, BP = 1 (3 > 2).
  close(corpusBleu(["the the the"], [["the cat"]], 1)[0], 1 / 3);
  // "the cat" against a 6-word reference: p1 = p2 = 1, BP = exp(1 - 6/2).
  close(corpusBleu(["the cat"], [["the cat sat on the mat"]], 2)[1], Math.exp(-2));
  // The closest reference length is used: 2-word candidate, references of 2 and 6 words -> BP 1.
  close(corpusBleu(["the cat"], [["the cat sat on the mat", "the cat"]], 2)[1], 1);
});

Deno.test("corpusBleu() pools n-gram counts over the corpus, not per sentence", () => {
  // Sentence 1 has p2 = 1 (1/1), sentence 2 has p2 = 0 (0/1): corpus p2 = 1/2.
  const [b1, b2] = corpusBleu(["a b", "c d"], [["a b"], ["c e"]], 2);
  close(b1, 3 / 4);
  close(b2, Math.sqrt((3 / 4) * (1 / 2)));
});

Deno.test("meteorSentence() follows Banerjee & Lavie's worked example", () => {
  // m = 6, P = 1, R = 6/7, Fmean = 60/69; chunks = 2 -> penalty 0.5 (2/6)^3.
  const s = meteorSentence(
    "the president spoke to the audience",
    "the president then spoke to the audience",
  );
  close(s, (60 / 69) * (1 - 0.5 * (2 / 6) ** 3));
  close(meteorSentence("a b c", "a b c"), 1 - 0.5 * (1 / 3) ** 3);
  close(meteorSentence("x y", "a b"), 0);
});

Deno.test("meteorSentence() matches stems after exact words", () => {
  assert.equal(stem("shapes"), "shape");
  assert.equal(stem("boxes"), "box");
  assert.equal(stem("glass"), "glass");
  close(meteorSentence("two shape", "two shapes"), 1 - 0.5 * (1 / 2) ** 3);
});

Deno.test("corpusMeteor() takes each candidate's best reference", () => {
  close(corpusMeteor(["a b c"], [["x y z", "a b c"]]), 1 - 0.5 * (1 / 3) ** 3);
});

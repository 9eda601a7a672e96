/**
 * Question answering on the shapes world (../shared/WORLD.md, "Questions and answers"): every
 * question of each scene, asked about its rendered image, greedy; an answer counts when it equals
 * the reference after lower-casing and trimming a final period.
 */
import { questions, renderScene, rng, sampleScenes, type Split } from "../world/world.ts";
import { type ChatPipeline, GREEDY } from "../models/chat/pipeline.ts";

export const QUESTION_TYPES = [
  "color",
  "shape",
  "count",
  "position",
  "exists",
  "background",
  "describe",
] as const;

export const normalizeAnswer = (a: string) => a.toLowerCase().trim().replace(/\.$/, "").trim();

export interface QaScores {
  split: Split;
  scenes: number;
  /** Accuracy per question type, and over all questions. */
  byType: Record<string, { asked: number; correct: number }>;
  overall: number;
}

export async function evaluateQa(
  model: ChatPipeline,
  split: Split,
  count: number,
  seed = 0,
): Promise<QaScores> {
  const byType: QaScores["byType"] = {};
  let asked = 0, correct = 0;
  for (const [i, scene] of sampleScenes({ split, count, seed }).entries()) {
    const image = { width: 64, height: 64, data: renderScene(scene, seed * 7919 + i) };
    for (const qa of questions(scene, rng(seed * 31 + i))) {
      const r = await model.chat([{
        role: "user",
        content: [{ type: "image", image }, { type: "text", text: qa.question }],
      }], { ...GREEDY, maxTokens: 40 });
      const ok = normalizeAnswer(r.text) === normalizeAnswer(qa.answer);
      const t = byType[qa.type] ??= { asked: 0, correct: 0 };
      t.asked++, asked++;
      if (ok) t.correct++, correct++;
    }
  }
  return { split, scenes: count, byType, overall: correct / asked };
}

/** Captioning quality on the shapes world: BLEU-1..4 and METEOR against the reference sets. */
import { referenceSet, renderScene, sampleScenes, type Split } from "../world/world.ts";
import { corpusBleu, corpusMeteor } from "./caption_metrics.ts";
import {
  type CaptionOptions,
  type CaptionPipeline,
  GREEDY,
} from "../models/captioning/pipeline.ts";

export interface CaptionScores {
  split: Split;
  images: number;
  bleu: number[];
  meteor: number;
  exact: number;
}

export async function evaluateCaptions(
  model: CaptionPipeline,
  split: Split,
  count: number,
  options: Partial<CaptionOptions> = {},
  seed = 0,
): Promise<CaptionScores> {
  const scenes = sampleScenes({ split, count, seed });
  const candidates: string[] = [];
  for (const [i, s] of scenes.entries()) {
    const { captions: [c] } = await model.caption({
      width: 64,
      height: 64,
      data: renderScene(s, seed * 7919 + i),
    }, { ...GREEDY, ...options });
    candidates.push(c.text);
  }
  const refs = scenes.map(referenceSet);
  return {
    split,
    images: count,
    bleu: corpusBleu(candidates, refs),
    meteor: corpusMeteor(candidates, refs),
    exact: candidates.filter((c, i) => c === refs[i][0]).length / count,
  };
}

import assert from "node:assert/strict";
import { Tokenizer } from "@huggingface/tokenizers";
import { clipTokenizerJson, loadTokenizer } from "./tokenizers.ts";

const SHARED = new URL("../../shared/assets/clip-tokenizer/", import.meta.url).pathname;
const shared = await Deno.stat(SHARED).then(() => true, () => false);
if (!shared) console.log("tokenizers: ../shared/assets is not beside this checkout; skipped");

Deno.test({
  name: "a CLIP tokenizer built from vocab.json + merges.txt equals the public tokenizer.json",
  ignore: !shared,
  fn: async () => {
    const pub = JSON.parse(await Deno.readTextFile(SHARED + "tokenizer.json"));
    const config = JSON.parse(await Deno.readTextFile(SHARED + "tokenizer_config.json"));
    const dir = await Deno.makeTempDir();
    await Deno.writeTextFile(`${dir}/vocab.json`, JSON.stringify(pub.model.vocab));
    await Deno.writeTextFile(
      `${dir}/merges.txt`,
      "#version: 0.2\n" + pub.model.merges.join("\n") + "\n",
    );
    await Deno.writeTextFile(`${dir}/tokenizer_config.json`, JSON.stringify(config));
    const built = await loadTokenizer(`${dir}/`);
    const reference = new Tokenizer(pub, config);
    for (
      const text of [
        "a photo of a red circle",
        "An astronaut riding a horse, 4k, highly detailed!!",
        "  naïve café — 2 dogs' toys ",
      ]
    ) {
      assert.deepEqual(built.tokenizer.encode(text).ids, reference.encode(text).ids, text);
    }
    assert.equal(built.padId, 49407);
    assert.deepEqual(
      clipTokenizerJson(pub.model.vocab, pub.model.merges).pre_tokenizer,
      pub.pre_tokenizer,
    );
    await Deno.remove(dir, { recursive: true });
  },
});

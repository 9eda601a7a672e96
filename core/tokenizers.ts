/**
 * Loads a tokenizer folder: `tokenizer.json` where there is one, else a CLIP BPE tokenizer built
 * from `vocab.json` + `merges.txt` (what diffusers' Stable Diffusion exports ship in tokenizer/),
 * with the pipeline of the public CLIP tokenizer.json (NFC, whitespace collapse, lower case,
 * CLIP's split pattern, byte-level BPE with `</w>` word ends, <|startoftext|> … <|endoftext|>).
 */
import { Tokenizer } from "@huggingface/tokenizers";

export interface LoadedTokenizer {
  tokenizer: Tokenizer;
  config: Record<string, unknown> & { model_max_length?: number };
  /** The pad token's id (CLIP pads with <|endoftext|>; SD 2.x with "!"). */
  padId: number;
}

/**
 * The library's tokenizer, except that decoding no ids is the empty string: the library throws
 * ("token_ids must be a non-empty array"), and a model may end its answer at the first token.
 */
class SafeTokenizer extends Tokenizer {
  override decode(ids: number[] | bigint[], options?: Parameters<Tokenizer["decode"]>[1]): string {
    return ids.length === 0 ? "" : super.decode(ids, options);
  }
}

const tokenName = (t: unknown) =>
  typeof t === "string" ? t : (t as { content?: string } | undefined)?.content;

export function clipTokenizerJson(vocab: Record<string, number>, merges: string[]) {
  const special = ["<|startoftext|>", "<|endoftext|>"].map((content) => ({
    id: vocab[content],
    content,
    single_word: false,
    lstrip: false,
    rstrip: false,
    normalized: content === "<|startoftext|>",
    special: true,
  }));
  return {
    version: "1.0",
    truncation: null,
    padding: null,
    added_tokens: special,
    normalizer: {
      type: "Sequence",
      normalizers: [{ type: "NFC" }, {
        type: "Replace",
        pattern: { Regex: "\\s+" },
        content: " ",
      }, { type: "Lowercase" }],
    },
    pre_tokenizer: {
      type: "Sequence",
      pretokenizers: [{
        type: "Split",
        pattern: {
          Regex:
            "<\\|startoftext\\|>|<\\|endoftext\\|>|'s|'t|'re|'ve|'m|'ll|'d|[\\p{L}]+|[\\p{N}]|[^\\s\\p{L}\\p{N}]+",
        },
        behavior: "Removed",
        invert: true,
      }, { type: "ByteLevel", add_prefix_space: false, trim_offsets: true, use_regex: true }],
    },
    post_processor: {
      type: "RobertaProcessing",
      sep: ["<|endoftext|>", vocab["<|endoftext|>"]],
      cls: ["<|startoftext|>", vocab["<|startoftext|>"]],
      trim_offsets: false,
      add_prefix_space: false,
    },
    decoder: { type: "ByteLevel", add_prefix_space: true, trim_offsets: true, use_regex: true },
    model: {
      type: "BPE",
      dropout: null,
      unk_token: "<|endoftext|>",
      continuing_subword_prefix: "",
      end_of_word_suffix: "</w>",
      fuse_unk: false,
      byte_fallback: false,
      vocab,
      merges,
    },
  };
}

/** The tokenizer in `dir` (ending in "/"). */
export async function loadTokenizer(dir: string): Promise<LoadedTokenizer> {
  const readJson = async (name: string) => JSON.parse(await Deno.readTextFile(dir + name));
  const config = await readJson("tokenizer_config.json").catch(() => ({}));
  let json;
  try {
    json = await readJson("tokenizer.json");
  } catch {
    const [vocab, merges] = await Promise.all([
      readJson("vocab.json"),
      Deno.readTextFile(dir + "merges.txt"),
    ]);
    const lines = merges.split("\n").filter((l) => l && !l.startsWith("#version"));
    json = clipTokenizerJson(vocab, lines);
  }
  const tokenizer = new SafeTokenizer(json, config);
  const pad = tokenName(config.pad_token) ?? "<|endoftext|>";
  return { tokenizer, config, padId: tokenizer.token_to_id(pad) ?? 0 };
}

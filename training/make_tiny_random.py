"""Architecture-faithful tiny models with random weights, in the exact layout of public exports,
for the mock hub of the model-pull tests (like the ecosystem's tiny-random test models).

    /usr/bin/python3 training/make_tiny_random.py --out tests/fixtures/hub

Writes
- Xenova/clip-vit-base-patch32 (config.json, preprocessor_config.json, onnx/text_model.onnx,
  onnx/vision_model.onnx): 224 × 224 input, 32 × 32 patches and the public CLIP vocabulary of
  49,408 tokens, but 16-wide towers. Its tokenizer files are the public ones in
  ../shared/assets/clip-tokenizer, which the tests serve beside these files (not committed).
- Xenova/vit-gpt2-image-captioning (config, generation and preprocessor configs, tokenizer files,
  onnx/encoder_model.onnx, onnx/decoder_model_merged.onnx): 224 × 224 input, 16 × 16 patches, a
  2-layer GPT-2 decoder with cross-attention and a KV cache, all 16 wide. Its tokenizer is the
  world's word-level one (GPT-2's BPE files are not in the mock hub); the ONNX names and shapes
  are the public export's.
- onnxruntime/sd-turbo (model_index.json, scheduler/scheduler_config.json, tokenizer/ without a
  tokenizer.json, text_encoder/, unet/, vae_decoder/, vae_encoder/ model.onnx): SD's shapes — a
  CLIP text encoder over the public 49,408-token vocabulary with 77 positions, 4 latent channels,
  a VAE that downsamples 8x, 512 x 512 images — at widths of 8 to 16. No component configs, as
  the pipeline must cope without them. Its tokenizer/vocab.json and merges.txt are derived from
  the public CLIP tokenizer.json by the test that serves them.
- HuggingFaceTB/SmolVLM-256M-Instruct (config, generation, preprocessor and processor configs,
  chat_template.json, tokenizer files, onnx/vision_encoder.onnx, onnx/embed_tokens.onnx,
  onnx/decoder_model_merged.onnx): Idefics3's shapes — 512 x 512 images in 16 x 16 patches,
  pixel shuffle 4 to 64 image tokens, a Llama decoder with grouped-query attention and a KV
  cache — at width 16, with the world's word-level chat tokenizer (SmolVLM's BPE files are not
  in the mock hub).
- tests/fixtures/sd-inpaint-tiny (not a hub repo; a model folder with its manifest): a dedicated
  inpainting UNet (in_channels = 2 x 4 + 1: latents, mask, masked-image latents), as SD's
  inpainting checkpoints have, with sd-tiny's VAE shape and clip-tiny's tokenizer.
"""
import argparse
import json
import os

import torch

from clip_model import Clip, ClipConfig, TextExport, VisionExport
from onnx_export import export

# stabilityai/sd-turbo's scheduler_config.json.
SD_TURBO_SCHEDULER = {
    "_class_name": "EulerDiscreteScheduler", "beta_end": 0.012, "beta_schedule": "scaled_linear",
    "beta_start": 0.00085, "num_train_timesteps": 1000, "prediction_type": "epsilon",
    "steps_offset": 1, "timestep_spacing": "trailing"}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="tests/fixtures/hub")
    ap.add_argument("--real-size", metavar="DIR",
                    help="write only CLIP ViT-B/32 at its public size (random weights) and a 2048² MatMul "
                         "graph into DIR, for the benchmarks")
    ap.add_argument("--real-size-smolvlm", metavar="DIR",
                    help="write only SmolVLM-256M's architecture at its public size (random weights) into DIR")
    ap.add_argument("--real-size-sd-turbo", metavar="DIR",
                    help="write only SD-Turbo's architecture at its public size (random weights) into DIR")
    args = ap.parse_args()
    if args.real_size:
        return real_size(args.real_size)
    if args.real_size_smolvlm:
        return smolvlm_real_size(args.real_size_smolvlm)
    if args.real_size_sd_turbo:
        return sd_turbo_real_size(args.real_size_sd_turbo)
    torch.manual_seed(0)
    c = ClipConfig(stem="linear", image_size=224, patch_size=32, vision_width=16, vision_layers=2, vision_heads=2,
                   text_width=16, text_layers=2, text_heads=2, max_positions=77, vocab_size=49408,
                   embed_dim=16, eos_token_id=49407)
    out = f"{args.out}/Xenova/clip-vit-base-patch32"
    write_clip(c, out)
    print(f"wrote {out}")
    vit_gpt2(args.out)
    sd_turbo(args.out)
    sd_inpaint("tests/fixtures/sd-inpaint-tiny")
    external_data("tests/fixtures/external-data")
    smolvlm(args.out)


def write_clip(c: ClipConfig, out: str) -> None:
    """A CLIP of config `c` with random weights (seed the generator first), in the public export's
    layout: config.json, preprocessor_config.json, onnx/text_model.onnx, onnx/vision_model.onnx."""
    model = Clip(c).eval()
    os.makedirs(f"{out}/onnx", exist_ok=True)
    common = {"hidden_act": "quick_gelu", "projection_dim": c.embed_dim, "layer_norm_eps": 1e-5}
    json.dump({
        "architectures": ["CLIPModel"], "model_type": "clip", "projection_dim": c.embed_dim,
        "logit_scale_init_value": 2.6592,
        "text_config": {"model_type": "clip_text_model", "hidden_size": c.text_width, "intermediate_size": 4 * c.text_width,
                        "num_attention_heads": c.text_heads, "num_hidden_layers": c.text_layers,
                        "max_position_embeddings": c.max_positions, "vocab_size": c.vocab_size,
                        "bos_token_id": 49406, "eos_token_id": 49407, "pad_token_id": 1, **common},
        "vision_config": {"model_type": "clip_vision_model", "hidden_size": c.vision_width,
                          "intermediate_size": 4 * c.vision_width, "num_attention_heads": c.vision_heads,
                          "num_hidden_layers": c.vision_layers, "image_size": c.image_size, "patch_size": c.patch_size,
                          "num_channels": 3, **common},
    }, open(f"{out}/config.json", "w"), indent=2)
    json.dump({
        "crop_size": 224, "do_center_crop": True, "do_normalize": True, "do_resize": True,
        "feature_extractor_type": "CLIPFeatureExtractor",
        "image_mean": [0.48145466, 0.4578275, 0.40821073], "image_std": [0.26862954, 0.26130258, 0.27577711],
        "resample": 3, "size": 224,
    }, open(f"{out}/preprocessor_config.json", "w"), indent=2)
    ids = torch.tensor([[49406, 320, 1125, 539, 320, 2102, 49407]])
    export(TextExport(model), (ids,), f"{out}/onnx/text_model.onnx", ["input_ids"],
           ["text_embeds", "last_hidden_state"], {"input_ids": {0: "batch_size", 1: "sequence_length"}})
    export(VisionExport(model), (torch.zeros(1, 3, 224, 224),), f"{out}/onnx/vision_model.onnx", ["pixel_values"],
           ["image_embeds", "last_hidden_state"], {"pixel_values": {0: "batch_size"}})


def real_size(out: str) -> None:
    """openai/clip-vit-base-patch32's architecture and sizes (a 768-wide, 12-layer vision tower over
    32 × 32 patches of 224² images; a 512-wide, 12-layer text tower; 512-d embeddings), random
    weights, its public tokenizer."""
    import shutil

    torch.manual_seed(0)
    c = ClipConfig(stem="linear", image_size=224, patch_size=32, vision_width=768, vision_layers=12,
                   vision_heads=12, text_width=512, text_layers=12, text_heads=8, max_positions=77,
                   vocab_size=49408, embed_dim=512, eos_token_id=49407)
    clip = f"{out}/clip-vit-base-patch32"
    write_clip(c, clip)
    shared = os.path.join(os.path.dirname(__file__), "../../shared/assets/clip-tokenizer")
    for name in os.listdir(shared):
        shutil.copy(os.path.join(shared, name), clip)
    json.dump({"id": "clip-vit-base-patch32-random", "family": "clip",
               "description": "CLIP ViT-B/32's architecture with random weights (benchmarks only)",
               "capabilities": ["embeddings"], "modalities": {"input": ["text", "image"], "output": ["embedding"]},
               "files": {"text": "onnx/text_model.onnx", "vision": "onnx/vision_model.onnx"}, "license": "MIT"},
              open(f"{clip}/manifest.json", "w"), indent=2)
    print(f"wrote {clip}")


def vit_gpt2(root: str) -> None:
    from common import SPECIAL, WordTokenizer
    from export_vit_gpt2 import export_onnx
    from vit_gpt2_model import VitGpt2, VitGpt2Config

    words = json.load(open("data/world/world.json"))["vocabulary"] if os.path.exists("data/world/world.json") else []
    tok = WordTokenizer(words, max_length=32)
    c = VitGpt2Config(image_size=224, patch_size=16, enc_width=16, enc_layers=1, enc_heads=2, n_embd=16,
                      n_layer=2, n_head=2, n_positions=32, vocab_size=len(tok.tokens))
    torch.manual_seed(1)
    model = VitGpt2(c).eval()
    out = f"{root}/Xenova/vit-gpt2-image-captioning"
    os.makedirs(f"{out}/onnx", exist_ok=True)
    write = lambda name, obj: json.dump(obj, open(f"{out}/{name}", "w"), indent=2)
    write("config.json", {
        "architectures": ["VisionEncoderDecoderModel"], "model_type": "vision-encoder-decoder",
        "decoder_start_token_id": 0, "eos_token_id": 1, "pad_token_id": 1,
        "encoder": {"model_type": "vit", "image_size": 224, "patch_size": 16, "hidden_size": 16,
                    "num_hidden_layers": 1, "num_attention_heads": 2},
        "decoder": {"model_type": "gpt2", "add_cross_attention": True, "n_embd": 16, "n_layer": 2, "n_head": 2,
                    "n_positions": 32, "vocab_size": c.vocab_size, "bos_token_id": 0, "eos_token_id": 1},
    })
    write("generation_config.json", {"decoder_start_token_id": 0, "bos_token_id": 0, "eos_token_id": 1,
                                     "max_length": 16})
    write("preprocessor_config.json", {"do_normalize": True, "do_resize": True, "feature_extractor_type": "ViTFeatureExtractor",
                                       "image_mean": [0.5, 0.5, 0.5], "image_std": [0.5, 0.5, 0.5], "resample": 2, "size": 224})
    write("tokenizer.json", tok.tokenizer_json())
    write("tokenizer_config.json", {"tokenizer_class": "PreTrainedTokenizerFast", "bos_token": SPECIAL[0],
                                    "eos_token": SPECIAL[1], "unk_token": SPECIAL[2], "model_max_length": 32})
    write("special_tokens_map.json", {"bos_token": SPECIAL[0], "eos_token": SPECIAL[1], "unk_token": SPECIAL[2]})
    export_onnx(model, out)
    print(f"wrote {out}")


def sd_turbo(root: str) -> None:
    import torch.nn as nn

    from clip_model import Clip, ClipConfig
    from export_sd import TextEncoder, VaeDecoder, VaeEncoder
    from export_sd import export as export_sd_part
    from sd_model import Res, SdConfig, UNet

    class Vae8(nn.Module):
        """SD's VAE shape at toy width: three 2x downsamplings, 4 latent channels."""

        def __init__(self):
            super().__init__()
            self.encoder = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.Conv2d(8, 8, 3, 2, 1),
                                         nn.Conv2d(8, 8, 3, 2, 1), nn.Conv2d(8, 8, 3, 2, 1), Res(8, 8, norm=False))
            self.decoder = nn.Sequential(nn.Conv2d(4, 8, 3, padding=1), Res(8, 8, norm=False),
                                         *[m for _ in range(3) for m in (nn.Upsample(scale_factor=2.0), nn.Conv2d(8, 8, 3, padding=1))],
                                         nn.Conv2d(8, 3, 3, padding=1))

        def encode(self, x):
            return self.encoder(x).chunk(2, 1)

        def decode(self, z):
            return self.decoder(z)

    torch.manual_seed(2)
    out = f"{root}/onnxruntime/sd-turbo"
    clip = Clip(ClipConfig(stem="linear", text_width=16, text_layers=1, text_heads=2, max_positions=77, vocab_size=49408,
                           embed_dim=16, eos_token_id=49407)).eval()
    unet = UNet(SdConfig(unet_channels=(8, 16, 16), text_width=16, heads=2)).eval()
    vae = Vae8().eval()
    ids = torch.full((1, 77), 49407)
    ids[0, 0] = 49406
    export_sd_part(TextEncoder(clip), (ids,), f"{out}/text_encoder/model.onnx", ["input_ids"],
                   ["last_hidden_state", "pooler_output"], {"input_ids": {0: "batch_size", 1: "sequence_length"}})
    export_sd_part(unet, (torch.zeros(2, 4, 64, 64), torch.tensor([999.0, 999.0]), torch.zeros(2, 77, 16)),
                   f"{out}/unet/model.onnx", ["sample", "timestep", "encoder_hidden_states"], ["out_sample"],
                   {"sample": {0: "batch_size", 2: "height", 3: "width"}, "timestep": {0: "batch_size"},
                    "encoder_hidden_states": {0: "batch_size", 1: "sequence_length"}})
    export_sd_part(VaeDecoder(vae), (torch.zeros(1, 4, 64, 64),), f"{out}/vae_decoder/model.onnx", ["latent_sample"],
                   ["sample"], {"latent_sample": {0: "batch_size", 2: "height_latent", 3: "width_latent"}})
    export_sd_part(VaeEncoder(vae), (torch.zeros(1, 3, 512, 512),), f"{out}/vae_encoder/model.onnx", ["sample"],
                   ["latent_sample"], {"sample": {0: "batch_size", 2: "height", 3: "width"}})
    os.makedirs(f"{out}/scheduler", exist_ok=True)
    write = lambda name, obj: json.dump(obj, open(f"{out}/{name}", "w"), indent=2)
    write("scheduler/scheduler_config.json", SD_TURBO_SCHEDULER)
    write("model_index.json", {"_class_name": "OnnxStableDiffusionPipeline",
                               "scheduler": ["diffusers", "EulerDiscreteScheduler"],
                               "text_encoder": ["diffusers", "OnnxRuntimeModel"],
                               "tokenizer": ["transformers", "CLIPTokenizer"],
                               "unet": ["diffusers", "OnnxRuntimeModel"],
                               "vae_decoder": ["diffusers", "OnnxRuntimeModel"],
                               "vae_encoder": ["diffusers", "OnnxRuntimeModel"]})
    print(f"wrote {out}")


def external_data(out: str) -> None:
    """model.onnx, y = x @ W with W (4 × 3, the numbers 0..11) in model.onnx_data: how an export
    past protobuf's 2 GB limit stores its weights (ONNX external data), small enough to commit."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper
    import numpy as np

    os.makedirs(out, exist_ok=True)
    w = numpy_helper.from_array(np.arange(12, dtype=np.float32).reshape(4, 3), "W")
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 3])
    graph = helper.make_graph([helper.make_node("MatMul", ["x", "W"], ["y"])], "external", [x], [y], [w])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.save_model(model, f"{out}/model.onnx", save_as_external_data=True, location="model.onnx_data",
                    size_threshold=0)
    print(f"wrote {out}")


def sd_inpaint(out: str) -> None:
    from clip_model import Clip, ClipConfig
    from export_sd import TextEncoder, VaeDecoder, VaeEncoder
    from export_sd import export as export_sd_part
    from sd_model import SdConfig, UNet, Vae

    torch.manual_seed(3)
    c = SdConfig(unet_channels=(8, 16, 16), vae_channels=(8, 8, 8), text_width=16, heads=2)
    clip = Clip(ClipConfig(stem="linear", text_width=16, text_layers=1, text_heads=2, vocab_size=64, embed_dim=16)).eval()
    unet, vae = UNet(c, in_channels=9).eval(), Vae(c).eval()
    ids = torch.ones(1, 32, dtype=torch.long)
    export_sd_part(TextEncoder(clip), (ids,), f"{out}/text_encoder/model.onnx", ["input_ids"],
                   ["last_hidden_state", "pooler_output"], {"input_ids": {0: "batch_size", 1: "sequence_length"}})
    export_sd_part(unet, (torch.zeros(2, 9, 16, 16), torch.tensor([999.0, 999.0]), torch.zeros(2, 32, 16)),
                   f"{out}/unet/model.onnx", ["sample", "timestep", "encoder_hidden_states"], ["out_sample"],
                   {"sample": {0: "batch_size", 2: "height", 3: "width"}, "timestep": {0: "batch_size"},
                    "encoder_hidden_states": {0: "batch_size", 1: "sequence_length"}})
    export_sd_part(VaeDecoder(vae), (torch.zeros(1, 4, 16, 16),), f"{out}/vae_decoder/model.onnx", ["latent_sample"],
                   ["sample"], {"latent_sample": {0: "batch_size", 2: "height_latent", 3: "width_latent"}})
    export_sd_part(VaeEncoder(vae), (torch.zeros(1, 3, 64, 64),), f"{out}/vae_encoder/model.onnx", ["sample"],
                   ["latent_sample"], {"sample": {0: "batch_size", 2: "height", 3: "width"}})
    write = lambda name, obj: json.dump(obj, open(f"{out}/{name}", "w"), indent=2)
    os.makedirs(f"{out}/scheduler", exist_ok=True)
    os.makedirs(f"{out}/tokenizer", exist_ok=True)
    write("scheduler/scheduler_config.json", {"_class_name": "DDIMScheduler", "beta_schedule": "scaled_linear",
                                              "beta_start": 0.00085, "beta_end": 0.012, "num_train_timesteps": 1000,
                                              "steps_offset": 1, "timestep_spacing": "leading"})
    write("unet/config.json", {"in_channels": 9, "out_channels": 4, "sample_size": 16, "block_out_channels": [8, 16, 16]})
    write("vae_decoder/config.json", {"latent_channels": 4, "scaling_factor": 1.0, "block_out_channels": [8, 8, 8]})
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        open(f"{out}/tokenizer/{name}", "w").write(open(f"models/embedded/clip-tiny/{name}").read())
    write("manifest.json", {"id": "sd-inpaint-tiny", "family": "diffusion", "description": "random weights (tests)",
                            "capabilities": ["inpainting"], "modalities": {"input": ["text", "image"], "output": ["image"]},
                            "files": {"text_encoder": "text_encoder/model.onnx", "unet": "unet/model.onnx",
                                      "vae_decoder": "vae_decoder/model.onnx", "vae_encoder": "vae_encoder/model.onnx"},
                            "settings": {"default_size": 64, "min_size": 32, "max_size": 128}})
    print(f"wrote {out}")


def smolvlm(root: str) -> None:
    from clip_model import Clip, ClipConfig
    from common import vocabulary
    from export_vlm import CHAT_TEMPLATE, export_model
    from vlm_model import ChatTokenizer, Vlm, VlmConfig

    torch.manual_seed(4)
    tok = ChatTokenizer(vocabulary("data/world") if os.path.exists("data/world/world.json") else [])
    clip = Clip(ClipConfig(stem="linear", image_size=512, patch_size=16, vision_width=16, vision_layers=1, vision_heads=2,
                           text_layers=1, text_width=16, text_heads=2, embed_dim=16)).eval()
    c = VlmConfig(vocab_size=len(tok.tokens), hidden=16, layers=2, heads=2, kv_heads=1, intermediate=32,
                  vision_width=16, image_grid=32, scale_factor=4)
    model = Vlm(c, "unified", tok.ids["<image>"]).eval()
    out = f"{root}/HuggingFaceTB/SmolVLM-256M-Instruct"
    export_model(model, clip, c, "unified", tok, out, attentions=False)  # as the public export
    json.dump({"chat_template": CHAT_TEMPLATE}, open(f"{out}/chat_template.json", "w"), indent=2)
    print(f"wrote {out}")


def smolvlm_real_size(root: str) -> None:
    """HuggingFaceTB/SmolVLM-256M-Instruct's architecture and sizes, random weights, in its public
    ONNX layout: a 12-layer, 768-wide vision tower over 16 × 16 patches of 512² images (SigLIP's
    size; our ViT blocks), a 4 × 4 pixel shuffle to 64 image tokens, and a 30-layer Llama decoder
    of width 576 (9 query heads sharing 3 key/value heads, SwiGLU 1536) over a 49,280-token
    vocabulary. The tokenizer is the world's words padded with unused ones to that size: enough to
    time prefill and decoding, not to read text."""
    from clip_model import Clip, ClipConfig
    from common import vocabulary
    from export_vlm import CHAT_TEMPLATE, export_model
    from vlm_model import ChatTokenizer, Vlm, VlmConfig

    torch.manual_seed(5)
    words = vocabulary("data/world") if os.path.exists("data/world/world.json") else []
    tok = ChatTokenizer(words)
    tok = ChatTokenizer(words + [f"<unused_{i}>" for i in range(49280 - len(tok.tokens))])
    clip = Clip(ClipConfig(stem="linear", image_size=512, patch_size=16, vision_width=768, vision_layers=12,
                           vision_heads=12, text_layers=1, text_width=16, text_heads=2, embed_dim=16)).eval()
    c = VlmConfig(vocab_size=len(tok.tokens), hidden=576, layers=30, heads=9, kv_heads=3, intermediate=1536,
                  max_positions=2048, rope_theta=100000.0, vision_width=768, image_grid=32, scale_factor=4)
    model = Vlm(c, "unified", tok.ids["<image>"]).eval()
    out = f"{root}/smolvlm-256m"
    with torch.no_grad():
        export_model(model, clip, c, "unified", tok, out, attentions=False)
    json.dump({"chat_template": CHAT_TEMPLATE}, open(f"{out}/chat_template.json", "w"), indent=2)
    json.dump({"id": "smolvlm-256m-random", "family": "chat",
               "description": "SmolVLM-256M's architecture with random weights (benchmarks only)",
               "capabilities": ["chat"], "modalities": {"input": ["text", "image"], "output": ["text"]},
               "files": {"vision": "onnx/vision_encoder.onnx", "embed": "onnx/embed_tokens.onnx",
                         "decoder": "onnx/decoder_model_merged.onnx"}, "license": "MIT"},
              open(f"{out}/manifest.json", "w"), indent=2)
    print(f"wrote {out} ({sum(p.numel() for p in model.parameters()) / 1e6:.0f} M decoder and connector "
          f"parameters, {sum(p.numel() for p in clip.vision.parameters()) / 1e6:.0f} M vision)")


def sd_turbo_real_size(root: str) -> None:
    """stabilityai/sd-turbo's architecture and sizes (SD 2.1's), random weights, in the public ONNX
    layout: a 1024-wide, 23-layer CLIP text encoder over 77 tokens of the public vocabulary
    (OpenCLIP ViT-H's text tower, here in our CLIP blocks), SD 2.x's 866 M-parameter UNet
    (sd_public.py) and the VAE decoder (49 M), at 512² (64² latents). The UNet's 3.5 GB of fp32
    weights pass protobuf's 2 GB limit, so they go to unet/model.onnx_data beside the graph (ONNX
    external data, Optimum's file name). No VAE encoder: the benchmark only generates. Also
    bench.json (each graph's GFLOP at 512², counted as it runs)."""
    import shutil
    import tempfile

    import onnx

    from export_sd import TextEncoder
    from sd_public import UNet2DCondition, VaeDecoder, gflop

    torch.manual_seed(6)
    out = f"{root}/sd-turbo"
    clip = Clip(ClipConfig(stem="linear", text_width=1024, text_layers=23, text_heads=16, max_positions=77,
                           vocab_size=49408, embed_dim=1024, eos_token_id=49407, vision_width=32, vision_layers=1,
                           vision_heads=2)).eval()
    ids = torch.full((1, 77), 49407)
    ids[0, 0] = 49406
    with torch.no_grad():
        export(TextEncoder(clip), (ids,), f"{out}/text_encoder/model.onnx", ["input_ids"],
               ["last_hidden_state", "pooler_output"], {"input_ids": {0: "batch_size", 1: "sequence_length"}})
        del clip
        vae = VaeDecoder().eval()
        flops = {"vae_decoder_gflop": gflop(vae, torch.zeros(1, 4, 64, 64))}
        export(vae, (torch.zeros(1, 4, 16, 16),), f"{out}/vae_decoder/model.onnx", ["latent_sample"],
               ["sample"], {"latent_sample": {0: "batch_size", 2: "height_latent", 3: "width_latent"}})
        with tempfile.TemporaryDirectory(dir=root) as tmp:
            # torch writes a model past 2 GB as one external file per weight; gathered into one below.
            unet = UNet2DCondition().eval()
            flops["unet_gflop"] = gflop(unet, torch.zeros(1, 4, 64, 64), torch.tensor([999.0]), torch.zeros(1, 77, 1024))
            export(unet, (torch.zeros(1, 4, 16, 16), torch.tensor([999.0]), torch.zeros(1, 77, 1024)),
                   f"{tmp}/model.onnx", ["sample", "timestep", "encoder_hidden_states"], ["out_sample"],
                   {"sample": {0: "batch_size", 2: "height", 3: "width"}, "timestep": {0: "batch_size"},
                    "encoder_hidden_states": {0: "batch_size", 1: "sequence_length"}})
            os.makedirs(f"{out}/unet", exist_ok=True)
            onnx.save_model(onnx.load(f"{tmp}/model.onnx"), f"{out}/unet/model.onnx", save_as_external_data=True,
                            all_tensors_to_one_file=True, location="model.onnx_data")
    shared = os.path.join(os.path.dirname(__file__), "../../shared/assets/clip-tokenizer")
    os.makedirs(f"{out}/tokenizer", exist_ok=True)
    for name in os.listdir(shared):
        shutil.copy(os.path.join(shared, name), f"{out}/tokenizer")
    write = lambda name, obj: json.dump(obj, open(f"{out}/{name}", "w"), indent=2)
    write("unet/config.json", {"_class_name": "UNet2DConditionModel", "sample_size": 64, "in_channels": 4,
                               "out_channels": 4, "cross_attention_dim": 1024,
                               "block_out_channels": [320, 640, 1280, 1280]})
    write("vae_decoder/config.json", {"_class_name": "AutoencoderKL", "latent_channels": 4, "scaling_factor": 0.18215,
                                      "block_out_channels": [128, 256, 512, 512]})
    os.makedirs(f"{out}/scheduler", exist_ok=True)
    write("scheduler/scheduler_config.json", SD_TURBO_SCHEDULER)
    write("manifest.json", {"id": "sd-turbo-random", "family": "diffusion",
                            "description": "SD-Turbo's architecture with random weights (benchmarks only)",
                            "capabilities": ["text-to-image"], "modalities": {"input": ["text"], "output": ["image"]},
                            "files": {"text_encoder": "text_encoder/model.onnx", "unet": "unet/model.onnx",
                                      "vae_decoder": "vae_decoder/model.onnx"},
                            "license": "MIT", "settings": {"default_steps": 1, "default_guidance": 0.0}})
    write("bench.json", {"size": 512, "batch": 1, **flops})
    print(f"wrote {out}")


if __name__ == "__main__":
    main()

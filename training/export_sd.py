"""Export sd-tiny in the ONNX layout of the public Stable Diffusion exports (diffusers/Olive):

    models/embedded/sd-tiny/
      model_index.json
      text_encoder/model.onnx  (input_ids -> last_hidden_state, pooler_output)
      tokenizer/               (tokenizer.json and its config: clip-tiny's)
      unet/model.onnx          (sample, timestep, encoder_hidden_states -> out_sample)
      unet/model_attention.onnx  the same UNet, also -> attention_maps [B, text tokens, h, w]:
                               its cross-attention to each token, averaged over the chosen
                               heads at latent resolution (DAAM; run only for return_attention)
      vae_decoder/model.onnx   (latent_sample -> sample)
      vae_encoder/model.onnx   (sample -> latent_sample; here the posterior mean, deterministic)
      scheduler/scheduler_config.json
      manifest.json, README.md (model card; judge scores from `deno task eval images`)

    /usr/bin/python3 training/export_sd.py --run data/runs/sd-tiny --out models/embedded/sd-tiny

`--from-export` (the training run is not kept): loads the text encoder, UNet and VAE decoder back
from the ONNX files shipped in --out, writes unet/model_attention.onnx, adds it to manifest.json
and writes the golden fixture; the other graphs, the configs and the card stay as they are.
"""
import argparse
import json
import os

import torch
import torch.nn as nn

from clip_model import Clip, load_clip
from common import World
from clip_model import ClipConfig
from onnx_export import card_scores, export, golden_values, load_onnx_weights, n_parameters, write_fixture, write_json
from sd_model import MAX_LENGTH, SdConfig, UNet, UNetWithMaps, Vae, to_unit


class TextEncoder(nn.Module):
    def __init__(self, clip: Clip):
        super().__init__()
        self.text = clip.text

    def forward(self, input_ids):
        _, hidden = self.text(input_ids)
        first_eos = (input_ids == self.text.eos).int().argmax(-1)
        return hidden, hidden[torch.arange(input_ids.shape[0]), first_eos]


class VaeEncoder(nn.Module):
    def __init__(self, vae: Vae):
        super().__init__()
        self.vae = vae

    def forward(self, sample):
        return self.vae.encode(sample)[0]


class VaeDecoder(nn.Module):
    def __init__(self, vae: Vae):
        super().__init__()
        self.vae = vae

    def forward(self, latent_sample):
        return self.vae.decode(latent_sample)


def parse_args():
    ap = argparse.ArgumentParser()
    ap.add_argument("--run", default="data/runs/sd-tiny")
    ap.add_argument("--clip", default="data/runs/clip-tiny/last.pt")
    ap.add_argument("--clip-dir", default="models/embedded/clip-tiny")
    ap.add_argument("--data", default="data/world")
    ap.add_argument("--out", default="models/embedded/sd-tiny")
    ap.add_argument("--golden", default="tests/fixtures/sd-tiny.golden.json")
    ap.add_argument("--id", default="sd-tiny", help="the manifest's model id")
    ap.add_argument("--vae", default="models/embedded/sd-tiny",
                    help="the export whose VAE ships when the run has no vae.pt (read before --out is written)")
    ap.add_argument("--raw", action="store_true", help="export the trained weights, not their EMA")
    ap.add_argument("--scores", help="the table `deno task eval images` printed, for the model card")
    ap.add_argument("--from-export", action="store_true",
                    help="no training run: re-export the UNet with its attention maps from the files in --out")
    ap.add_argument("--map-blocks", default="down2:1,down2:0",
                    help="the cross-attention blocks the word maps average, comma-separated among down1, down2, "
                         "mid, up2, up1, each with all its heads, or one head as block:k ('': every head of every block)")
    return ap.parse_args()


def load_run(run: str, clip_path: str, raw: bool, vae_export: str):
    """The UNet (its EMA unless `raw`), the VAE (the run's, else `vae_export`'s) and the clip-tiny
    text tower, in eval mode, and the UNet's and VAE's checkpoints (steps, scaling_factor)."""
    unet_state = torch.load(f"{run}/unet.pt", map_location="cpu")
    config = SdConfig(**{**unet_state["config"], "unet_channels": tuple(unet_state["config"]["unet_channels"])})
    unet = UNet(config)
    unet.load_state_dict(unet_state["model" if raw else "ema"])
    if os.path.exists(f"{run}/vae.pt"):
        vae_state = torch.load(f"{run}/vae.pt", map_location="cpu")
        vae = Vae(config)
        vae.load_state_dict(vae_state["model"])
    else:
        vae, _ = vae_from_export(vae_export)
        vae_state = {"step": json.load(open(f"{vae_export}/training.json"))["vae_steps"]}
    clip, _ = load_clip(clip_path)
    for m in (unet, vae, clip):
        m.eval()
    return config, unet, vae, clip, unet_state, vae_state


def text_encoder_graph(clip: Clip):
    """The export() arguments of text_encoder/model.onnx (module, example inputs, input and output
    names, dynamic axes)."""
    ids = torch.ones(2, MAX_LENGTH, dtype=torch.long)
    ids[:, 0] = 0
    return (TextEncoder(clip), (ids,), ["input_ids"], ["last_hidden_state", "pooler_output"],
            {"input_ids": {0: "batch_size", 1: "sequence_length"}})


def unet_graph(config: SdConfig, unet: UNet, maps: bool = False, blocks: tuple = ()):
    """The export() arguments of unet/model.onnx, or with `maps` of unet/model_attention.onnx (the
    same UNet with the word maps as a second output)."""
    g = torch.Generator().manual_seed(0)
    lat = torch.randn(2, config.latent_channels, 16, 16, generator=g)
    hid = torch.randn(2, MAX_LENGTH, config.text_width, generator=g)
    dynamic = {"sample": {0: "batch_size", 2: "height", 3: "width"}, "timestep": {0: "batch_size"},
               "encoder_hidden_states": {0: "batch_size", 1: "sequence_length"}}
    outputs = ["out_sample"]
    if maps:
        outputs.append("attention_maps")
        dynamic["attention_maps"] = {0: "batch_size", 1: "sequence_length", 2: "height", 3: "width"}
    return (UNetWithMaps(unet, blocks) if maps else unet, (lat, torch.tensor([500.0, 20.0]), hid),
            ["sample", "timestep", "encoder_hidden_states"], outputs, dynamic)


def vae_decoder_graph(config: SdConfig, vae: Vae):
    return (VaeDecoder(vae), (torch.zeros(2, config.latent_channels, 16, 16),), ["latent_sample"], ["sample"],
            {"latent_sample": {0: "batch_size", 2: "height_latent", 3: "width_latent"}})


def vae_encoder_graph(vae: Vae):
    return (VaeEncoder(vae), (torch.zeros(2, 3, 64, 64),), ["sample"], ["latent_sample"],
            {"sample": {0: "batch_size", 2: "height", 3: "width"}})


def vae_from_export(out: str) -> tuple[Vae, float]:
    """sd-tiny's VAE, both halves in eval mode, and its scaling_factor, from the exported folder."""
    config = SdConfig()
    vae = Vae(config)
    for (module, example, inputs, outputs, dynamic), path in ((vae_decoder_graph(config, vae), "vae_decoder"),
                                                              (vae_encoder_graph(vae), "vae_encoder")):
        load_onnx_weights(module, example, f"{out}/{path}/model.onnx", inputs, outputs, dynamic)
    return vae.eval(), json.load(open(f"{out}/vae_decoder/config.json"))["scaling_factor"]


def export_graphs(config: SdConfig, unet: UNet, vae: Vae, clip: Clip, out: str, blocks: tuple = ()) -> None:
    """text_encoder/, unet/ (plain and with the word maps), vae_decoder/ and vae_encoder/model.onnx,
    with the public exports' names."""
    module, example, inputs, outputs, dynamic = text_encoder_graph(clip)
    export(module, example, f"{out}/text_encoder/model.onnx", inputs, outputs, dynamic)
    for maps, name in ((False, "model.onnx"), (True, "model_attention.onnx")):
        module, example, inputs, outputs, dynamic = unet_graph(config, unet, maps, blocks)
        export(module, example, f"{out}/unet/{name}", inputs, outputs, dynamic)
    module, example, inputs, outputs, dynamic = vae_decoder_graph(config, vae)
    export(module, example, f"{out}/vae_decoder/model.onnx", inputs, outputs, dynamic)
    module, example, inputs, outputs, dynamic = vae_encoder_graph(vae)
    export(module, example, f"{out}/vae_encoder/model.onnx", inputs, outputs, dynamic)


def write_configs(config: SdConfig, clip: Clip, scale: float, clip_dir: str, out: str) -> None:
    """The tokenizer (clip-tiny's files), each component's config.json, the scheduler's and model_index.json."""
    z = config.latent_channels
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        os.makedirs(f"{out}/tokenizer", exist_ok=True)
        open(f"{out}/tokenizer/{name}", "w").write(open(f"{clip_dir}/{name}").read())
    write_json(out, "text_encoder/config.json", {"model_type": "clip_text_model", "hidden_size": clip.config.text_width,
                                                 "max_position_embeddings": clip.config.max_positions,
                                                 "vocab_size": clip.config.vocab_size})
    write_json(out, "unet/config.json", {"_class_name": "UNet2DConditionModel", "sample_size": 16, "in_channels": z,
                                         "out_channels": z, "cross_attention_dim": config.text_width,
                                         "block_out_channels": list(config.unet_channels)})
    vae_config = {"_class_name": "AutoencoderKL", "latent_channels": z, "scaling_factor": round(scale, 6),
                  "block_out_channels": list(config.vae_channels), "sample_size": 64, "in_channels": 3,
                  "out_channels": 3}
    write_json(out, "vae_decoder/config.json", vae_config)
    write_json(out, "vae_encoder/config.json", vae_config)
    write_json(out, "scheduler/scheduler_config.json", {
        "_class_name": "DDIMScheduler", "num_train_timesteps": config.num_train_timesteps,
        "beta_start": config.beta_start, "beta_end": config.beta_end, "beta_schedule": "scaled_linear",
        "prediction_type": "epsilon", "timestep_spacing": "leading", "steps_offset": 1,
        "set_alpha_to_one": False, "clip_sample": False,
    })
    write_json(out, "model_index.json", {
        "_class_name": "OnnxStableDiffusionPipeline", "text_encoder": ["diffusers", "OnnxRuntimeModel"],
        "tokenizer": ["transformers", "CLIPTokenizer"], "unet": ["diffusers", "OnnxRuntimeModel"],
        "vae_decoder": ["diffusers", "OnnxRuntimeModel"], "vae_encoder": ["diffusers", "OnnxRuntimeModel"],
        "scheduler": ["diffusers", "DDIMScheduler"],
    })


def measure_vae(vae: Vae, scale: float, z: int, data: str) -> dict:
    """On 500 validation images: the VAE's round-trip error, and a linear map from (scaled) latents
    to RGB at latent resolution (least squares; cheap streamed previews) with its error."""
    world = World(data, "val")
    with torch.no_grad():
        x = to_unit(world.images[:500])
        latents = vae.encode(x)[0] * scale
        small = torch.nn.functional.avg_pool2d(x, 4)
        recon = vae.decode(vae.encode(x)[0])
    A = torch.cat([latents.permute(0, 2, 3, 1).reshape(-1, z), torch.ones(latents.numel() // z, 1)], 1)
    B = small.permute(0, 2, 3, 1).reshape(-1, 3)
    sol = torch.linalg.lstsq(A, B).solution  # [z + 1, 3]
    return {"latent_rgb": sol, "preview_mean_abs": ((A @ sol - B).abs().mean() * 127.5).item(),
            "roundtrip_mean_abs": ((recon.clamp(-1, 1) - x).abs().mean() * 127.5).item(),
            "roundtrip_max_abs_mean": ((recon.clamp(-1, 1) - x).abs().amax(dim=(1, 2, 3)).mean() * 127.5).item()}


def write_manifest(sol: torch.Tensor, z: int, out: str, model_id: str = "sd-tiny") -> None:
    write_json(out, "manifest.json", {
        "id": model_id, "family": "diffusion",
        "description": "Latent diffusion trained by this project on the shapes world (VAE, UNet with cross-attention, clip-tiny's text tower)",
        "capabilities": ["text-to-image", "image-to-image", "inpainting", "attention-maps"],
        "modalities": {"input": ["text", "image"], "output": ["image"]},
        "files": {"text_encoder": "text_encoder/model.onnx", "unet": "unet/model.onnx",
                  "unet_attention": "unet/model_attention.onnx", "vae_decoder": "vae_decoder/model.onnx", "vae_encoder": "vae_encoder/model.onnx"},
        "license": "MIT", "preload": True,
        "settings": {
            "default_size": 64, "min_size": 32, "max_size": 128, "default_steps": 20,
            "max_steps": 100, "default_guidance": 4.0, "default_scheduler": "ddim",
            "latent_rgb": {"m": [[round(sol[c][r].item(), 5) for c in range(z)] for r in range(3)],
                           "bias": [round(sol[z][r].item(), 5) for r in range(3)]},
        },
    })


def write_golden(unet: UNet, vae: Vae, clip: Clip, scale: float, z: int, path: str, blocks: tuple = ()) -> None:
    """Golden fixture: fixed inputs and PyTorch's outputs, checked against ORT from Deno."""
    g = torch.Generator().manual_seed(0)
    g_lat = torch.randn(1, z, 16, 16, generator=g)
    g_ids = torch.ones(1, MAX_LENGTH, dtype=torch.long)
    g_ids[0, :4] = torch.tensor([0, 21, 20, 1])
    with torch.no_grad():
        g_hid = TextEncoder(clip)(g_ids)[0]
        g_out = unet(g_lat, torch.tensor([321.0]), g_hid)
        with_maps, g_maps = UNetWithMaps(unet, blocks)(g_lat, torch.tensor([321.0]), g_hid)
        assert torch.equal(with_maps, g_out), "the word maps must not change the UNet's output"
        g_img = vae.decode(g_lat / scale)
    write_fixture(path, {"input_ids": g_ids[0].tolist(), "latents": g_lat.flatten().tolist(), "timestep": 321,
                         "hidden_first": g_hid[0, :2].flatten().tolist(), "out_sample": g_out.flatten().tolist(),
                         "decoded": g_img.flatten().tolist(), "attention_maps": golden_values(g_maps)})


def unet_from_export(out: str) -> tuple[SdConfig, UNet]:
    """The UNet of an exported sd-tiny, in eval mode, and its config: the channels from
    unet/config.json, the position embeddings' side from the graph's own initializer (runs before
    run 3 have none)."""
    import onnx

    channels = tuple(json.load(open(f"{out}/unet/config.json"))["block_out_channels"])
    graph = onnx.load(f"{out}/unet/model.onnx", load_external_data=False).graph
    side = next((i.dims[-1] for i in graph.initializer if i.name == "att1.position"), 0)
    config = SdConfig(unet_channels=channels, position_side=side)
    unet = UNet(config)
    module, example, inputs, outputs, dynamic = unet_graph(config, unet)
    load_onnx_weights(module, example, f"{out}/unet/model.onnx", inputs, outputs, dynamic)
    return config, unet.eval()


def from_export(out: str, golden: str, blocks: tuple = ()) -> None:
    """--from-export: the text encoder, UNet and VAE decoder loaded back from the shipped graphs
    (load_onnx_weights checks each is the graph its module exports), then unet/model_attention.onnx,
    its manifest entry and the golden fixture."""
    read = lambda name: json.load(open(f"{out}/{name}"))
    config, unet = unet_from_export(out)
    t = read("text_encoder/config.json")
    clip = Clip(ClipConfig(text_width=t["hidden_size"], max_positions=t["max_position_embeddings"],
                           vocab_size=t["vocab_size"]))
    vae = Vae(config)
    for (module, example, inputs, outputs, dynamic), path in (
            (text_encoder_graph(clip), "text_encoder/model.onnx"), (vae_decoder_graph(config, vae), "vae_decoder/model.onnx")):
        load_onnx_weights(module, example, f"{out}/{path}", inputs, outputs, dynamic)
    for m in (vae, clip):
        m.eval()
    module, example, inputs, outputs, dynamic = unet_graph(config, unet, maps=True, blocks=blocks)
    export(module, example, f"{out}/unet/model_attention.onnx", inputs, outputs, dynamic)
    manifest = read("manifest.json")
    manifest["files"]["unet_attention"] = "unet/model_attention.onnx"
    manifest["capabilities"] = [c for c in manifest["capabilities"] if c != "attention-maps"] + ["attention-maps"]
    write_json(out, "manifest.json", manifest)
    scale = read("vae_decoder/config.json")["scaling_factor"]
    write_golden(unet, vae, clip, scale, config.latent_channels, golden, blocks)


def model_card(config: SdConfig, clip: Clip, stats: dict, raw: bool, scores: str, recipe: dict, blocks: tuple) -> str:
    z, scale, r = config.latent_channels, stats["scaling_factor"], recipe
    heads = ("every head of every cross-attention block" if not blocks else
             " and ".join(f"{b.split(':')[0]}'s head {b.split(':')[1]}" if ":" in b else f"every head of {b}" for b in blocks))
    rt_err, preview_err = stats["vae_roundtrip_mean_abs"], stats["preview_mean_abs"]
    side = config.position_side
    positions = ("" if not side else f"""
  Before each attention block's queries, learned position embeddings ({side} x {side}, {side // 2} x {side // 2} and
  {side // 4} x {side // 4} grids, resized to the latent's size): convolutions and attention see what is drawn, not
  where, so without them a position word has nothing to attend from.""")
    init = r.get("init")
    from_export = bool(init) and not init.endswith(".pt")
    started = "" if not init else (
        f"started from the UNet of the export it replaced (`--init {init}`, read back from its ONNX "
        "graph), then " if from_export else
        f"started from `{init}`'s EMA weights (the run before, whose UNet had no position "
        "embeddings; the new ones start at zero), then ")
    again = "" if not init else f" --positions {side} --init {init}"
    after = "" if not init else (
        " (from the export before this one" if from_export else f" (after the run that made `{init}`") + (
        "; its command in\n  `training/runs/sd-tiny.md`)")
    # What a layout run (train_sd --noisy-share / --single-share / --position-lr-scale) changed.
    noisy, single, table_lr = r.get("noisy_share", 0), r.get("single_share", 0), r.get("position_lr_scale", 1)
    timesteps = ("uniform timesteps" if not noisy else
                 f"uniform timesteps for {100 - noisy * 100:.0f}% of each batch and the noisiest 40% (t >= 600, where\n"
                 f"  the layout is decided) for the other {noisy * 100:.0f}%")
    batch_from = "" if not single else f", {single * 100:.0f}% of each batch one-object scenes"
    tables = "" if table_lr == 1 else f"; the position tables at {table_lr:g} x the rate, without weight decay"
    again += "".join(f" --{k} {v:g}" for k, v in (("noisy-share", noisy), ("single-share", single),
                                                  ("position-lr-scale", table_lr)) if v and not (k[0] == "p" and v == 1))
    return f"""# sd-tiny

Latent diffusion in the Stable Diffusion design (Rombach et al. 2022), trained by this project on
the shapes world (`../../../shared/WORLD.md`), in the ONNX layout of the public SD exports
(`text_encoder/`, `tokenizer/`, `unet/`, `vae_decoder/`, `vae_encoder/`, `scheduler/`) with their
input and output names, so that a public SD-Turbo or SD 1.5 export runs through the same pipeline.

- Text encoder: the shipped clip-tiny's text tower, frozen (width {clip.config.text_width}, {clip.config.max_positions} positions); the UNet
  reads its last hidden states, padded to {MAX_LENGTH} tokens as SD pads to 77.
- VAE: convolutional KL autoencoder, 64 x 64 x 3 <-> {z} x 16 x 16 (factor 4, not SD's 8: the
  world's small objects are 10-13 px), {stats['vae_parameters'] / 1e6:.2f} M parameters; `scaling_factor` {scale:.4f}
  (1 / the latents' standard deviation, as SD's 0.18215 was chosen). The exported encoder returns
  the posterior mean, so img2img is deterministic.
- UNet: {stats['unet_parameters'] / 1e6:.2f} M parameters; levels 16 x 16, 8 x 8, 4 x 4 with {list(config.unet_channels)} channels;
  residual blocks with the timestep embedding; at every level a transformer block with
  cross-attention to the text (queries from the image, keys and values from the text), with
  self-attention too except at 16 x 16; skip connections from the down to the up path.{positions}
  `unet/model_attention.onnx` is the same UNet with a second output, `attention_maps`
  [batch, text tokens, 16, 16]: DAAM's word maps (Tang et al. 2022: cross-attention
  probabilities upsampled bilinearly to 16 x 16 and averaged) from {heads}
  (`--map-blocks {",".join(blocks)}`, chosen with the pointing game on other scenes:
  `training/sweep_map_heads.py`, README); the service runs it instead of `unet/model.onnx` only
  for `return_attention` and sums the maps over the steps.
- Scheduler: SD's scaled-linear betas ({config.beta_start} to {config.beta_end}, {config.num_train_timesteps} steps), epsilon prediction;
  the service runs DDIM (default), DDPM, Euler or Euler ancestral over it.

## Training
- `deno task world` (seed 0), 20,000 training scenes; never the held-out pairs.
- VAE: {stats['vae_steps']} steps, batch 32, MSE + 0.5 L1 + 1e-5 KL, random 32 x 32 crops for 90% of the steps
  (no normalization layers, so a crop is just a smaller image), whole images for the rest.
  Round trip on 500 validation images: mean |error| {rt_err:.2f} / 255 per channel.
- UNet: {started}{stats['unet_steps']} steps, batch {r['batch']}{batch_from}, AdamW lr {r['lr']:g} with warm-up and cosine decay{tables},
  noise-prediction MSE at {timesteps}, the prompt (a random caption or paraphrase of the
  scene) replaced by the empty prompt {r['drop'] * 100:.0f}% of the time so that classifier-free guidance works.
  Offset noise {r['offset_noise']:g} throughout (a per-image, per-channel constant added to the noise;
  Guttenberg 2023): SD's schedule leaves sqrt(alpha_bar_T) = 0.07 of the signal at t = T, enough
  for a UNet to read an image's mean brightness off the noise, which pure noise at inference does
  not have (Lin et al. 2023); the first sd-tiny, trained 5,000 steps without it, drew mid-grey
  backgrounds. Exported: {"the final weights" if raw else f"an EMA ({r['ema']}) of the weights"}. One CPU thread, beside other training
  (`training/runs/sd-tiny.md`: every run, its curve and scores).
- A 3 x {z} linear map from latents to RGB (least squares on validation images, mean |error|
  {preview_err:.1f} / 255 at latent resolution) gives the streamed previews without running the VAE.
- Reproduce: `deno task world`, `/usr/bin/python3 training/clip_from_onnx.py --out data/runs/clip-tiny-600.pt`
  (the text tower, from clip-tiny's export), then `training/train_sd.py --stage unet --vae
  models/embedded/sd-tiny --clip data/runs/clip-tiny-600.pt --unet-channels {",".join(str(c) for c in config.unet_channels)}
  --steps {stats['unet_steps']} --batch {r['batch']} --lr {r['lr']:g} --offset-noise {r['offset_noise']:g}{again}`{after} (the VAE is this export's; `--stage vae
  --steps 2500` trains one), then `training/export_sd.py --run ... --clip data/runs/clip-tiny-600.pt`.

## Judge scores
Generated images are read by the pixel judge (`world/judge.ts`: background, object count, and for
each object colour, shape, size and grid position or left/right, above/below order), one image per
prompt, prompts are canonical captions of fresh test scenes (held-out: scenes with a purple
triangle or an orange circle), DDIM, through the service's pipeline:

{scores}

## Limits
It draws the shapes world only, at 64 x 64 (32 to 128 accepted, but it was trained at 64).
"""


def main():
    args = parse_args()
    blocks = tuple(b for b in args.map_blocks.split(",") if b)  # empty: every block
    if args.from_export:
        from_export(args.out, args.golden, blocks)
        print(f"wrote {args.out}/unet/model_attention.onnx and {args.golden} (from {args.out})")
        return
    config, unet, vae, clip, unet_state, vae_state = load_run(args.run, args.clip, args.raw, args.vae)
    scale = unet_state["scaling_factor"]
    z = config.latent_channels
    export_graphs(config, unet, vae, clip, args.out, blocks)
    write_configs(config, clip, scale, args.clip_dir, args.out)
    vae_scores = measure_vae(vae, scale, z, args.data)
    write_manifest(vae_scores["latent_rgb"], z, args.out, args.id)
    write_golden(unet, vae, clip, scale, z, args.golden, blocks)
    stats = {"unet_steps": unet_state["step"], "unet_weights": "final" if args.raw else "ema",
             "vae_steps": vae_state["step"], "scaling_factor": scale,
             "vae_roundtrip_mean_abs": vae_scores["roundtrip_mean_abs"],
             "vae_roundtrip_max_abs_mean": vae_scores["roundtrip_max_abs_mean"],
             "preview_mean_abs": vae_scores["preview_mean_abs"],
             "unet_parameters": n_parameters(unet), "vae_parameters": n_parameters(vae)}
    write_json(args.out, "training.json", stats)
    card = model_card(config, clip, stats, args.raw, card_scores(args.scores, "images"), unet_state["recipe"],
                      blocks)
    open(f"{args.out}/README.md", "w").write(card)
    print(json.dumps(stats, indent=2))


if __name__ == "__main__":
    main()

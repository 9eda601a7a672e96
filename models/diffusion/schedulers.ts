/**
 * Diffusion schedulers (DDPM, DDIM, Euler, Euler ancestral), configured from a public model's
 * `scheduler/scheduler_config.json` with diffusers' field names and semantics.
 *
 * Every step of every scheduler here is affine in the latents x, the (guided) model output and
 * fresh Gaussian noise z:  x_next = a·x + b·out + c·z.  A scheduler therefore compiles to a
 * plan of coefficients, and the denoising loop — in TypeScript or in one WGSL dispatch per step
 * on the GPU — just applies it. The same holds for re-noising known latents (img2img, inpainting):
 * noised = alpha·x0 + sigma·z.
 */
import { z } from "zod";

export const SCHEDULERS = ["ddpm", "ddim", "euler", "euler_a"] as const;
export type SchedulerName = typeof SCHEDULERS[number];

export const SchedulerConfig = z.object({
  _class_name: z.string().default("DDIMScheduler"),
  num_train_timesteps: z.number().int().positive().default(1000),
  beta_start: z.number().positive().default(0.00085),
  beta_end: z.number().positive().default(0.012),
  beta_schedule: z.enum(["linear", "scaled_linear"]).default("scaled_linear"),
  prediction_type: z.enum(["epsilon", "v_prediction"]).default("epsilon"),
  timestep_spacing: z.enum(["leading", "trailing", "linspace"]).default("leading"),
  steps_offset: z.number().int().min(0).default(0),
  set_alpha_to_one: z.boolean().default(false),
}).passthrough();
export type SchedulerConfig = z.infer<typeof SchedulerConfig>;

/** The scheduler a model's config names, as one of ours. */
export function defaultScheduler(config: SchedulerConfig): SchedulerName {
  const name = config._class_name.toLowerCase();
  if (name.includes("ancestral")) return "euler_a";
  if (name.includes("euler")) return "euler";
  if (name.includes("ddpm")) return "ddpm";
  return "ddim";
}

export interface Step {
  /** The UNet's timestep input. */
  timestep: number;
  /** The UNet reads scaleIn·x (Euler's scale_model_input; 1 for DDPM/DDIM). */
  scaleIn: number;
  /** x_next = a·x + b·out + c·z. */
  a: number;
  b: number;
  c: number;
  /** Known latents re-noised to the level of x_next: alpha·x0 + sigma·z (inpainting). */
  knownAlpha: number;
  knownSigma: number;
}

export interface Plan {
  steps: Step[];
  /** Initial latents: initAlpha·x0 + initSigma·z (txt2img: x0 = 0). */
  initAlpha: number;
  initSigma: number;
}

/** ᾱ_t for t = 0..T-1. */
export function alphasCumprod(c: SchedulerConfig): Float64Array {
  const T = c.num_train_timesteps;
  const out = new Float64Array(T);
  let prod = 1;
  for (let t = 0; t < T; t++) {
    const beta = c.beta_schedule === "scaled_linear"
      ? (Math.sqrt(c.beta_start) +
        (Math.sqrt(c.beta_end) - Math.sqrt(c.beta_start)) * t / (T - 1)) **
        2
      : c.beta_start + (c.beta_end - c.beta_start) * t / (T - 1);
    prod *= 1 - beta;
    out[t] = prod;
  }
  return out;
}

/** Inference timesteps, high to low, per `timestep_spacing` (diffusers' three rules). */
export function timesteps(c: SchedulerConfig, n: number): number[] {
  const T = c.num_train_timesteps;
  const out: number[] = [];
  if (c.timestep_spacing === "leading") {
    const ratio = Math.floor(T / n);
    for (let i = n - 1; i >= 0; i--) out.push(i * ratio + c.steps_offset);
  } else if (c.timestep_spacing === "trailing") {
    const ratio = T / n;
    for (let i = 0; i < n; i++) out.push(Math.round(T - i * ratio) - 1);
  } else {
    for (let i = n - 1; i >= 0; i--) out.push(Math.round(i * (T - 1) / Math.max(n - 1, 1)));
  }
  return out.map((t) => Math.min(Math.max(t, 0), T - 1));
}

/** value = x·X + out·OUT: a prediction, as coefficients on the latents and the model output. */
interface Affine {
  x: number;
  out: number;
}

/**
 * Builds the plan for `n` steps; `strength` < 1 starts part-way (img2img): the first
 * round(n·strength) steps are skipped, as diffusers' img2img does, and strength 0 runs none.
 */
export function plan(
  name: SchedulerName,
  config: SchedulerConfig,
  n: number,
  strength = 1,
): Plan {
  const ac = alphasCumprod(config);
  const all = timesteps(config, n);
  const keep = Math.min(Math.floor(n * strength), n);
  const ts = all.slice(n - keep);
  const vpred = config.prediction_type === "v_prediction";
  const final = config.set_alpha_to_one ? 1 : ac[0];
  // ᾱ after the last step: DDIM's final_alpha_cumprod; clean latents for the others.
  const acAfter = (i: number) => i + 1 < ts.length ? ac[ts[i + 1]] : (name === "ddim" ? final : 1);

  if (name === "ddpm" || name === "ddim") {
    const steps = ts.map((t, i): Step => {
      const at = ac[t], ap = acAfter(i);
      const x0: Affine = vpred
        ? { x: Math.sqrt(at), out: -Math.sqrt(1 - at) }
        : { x: 1 / Math.sqrt(at), out: -Math.sqrt(1 - at) / Math.sqrt(at) };
      const eps: Affine = vpred ? { x: Math.sqrt(1 - at), out: Math.sqrt(at) } : { x: 0, out: 1 };
      const known = { knownAlpha: Math.sqrt(ap), knownSigma: Math.sqrt(1 - ap) };
      if (name === "ddim") { // eta = 0: deterministic
        const a = Math.sqrt(ap) * x0.x + Math.sqrt(1 - ap) * eps.x;
        const b = Math.sqrt(ap) * x0.out + Math.sqrt(1 - ap) * eps.out;
        return { timestep: t, scaleIn: 1, a, b, c: 0, ...known };
      }
      // DDPM posterior mean and "fixed_small" variance, over the spaced step t -> prev.
      const alpha = at / ap, beta = 1 - alpha;
      const cx0 = Math.sqrt(ap) * beta / (1 - at);
      const cxt = Math.sqrt(alpha) * (1 - ap) / (1 - at);
      const last = i + 1 === ts.length;
      const variance = Math.max((1 - ap) / (1 - at) * beta, 1e-20);
      return {
        timestep: t,
        scaleIn: 1,
        a: cx0 * x0.x + cxt,
        b: cx0 * x0.out,
        c: last ? 0 : Math.sqrt(variance),
        ...known,
      };
    });
    const t0 = ts[0] ?? 0;
    return keep === n
      ? { steps, initAlpha: 0, initSigma: 1 }
      : ts.length
      ? { steps, initAlpha: Math.sqrt(ac[t0]), initSigma: Math.sqrt(1 - ac[t0]) }
      : { steps, initAlpha: 1, initSigma: 0 };
  }

  // Euler: latents live in sigma space, x = x0 + σ·ε, and the UNet reads x / sqrt(σ² + 1).
  const sigma = (t: number) => Math.sqrt((1 - ac[t]) / ac[t]);
  const sigmas = [...ts.map(sigma), 0];
  const steps = ts.map((t, i): Step => {
    const s = sigmas[i], next = sigmas[i + 1];
    const x0: Affine = vpred
      ? { x: 1 / (s * s + 1), out: -s / Math.sqrt(s * s + 1) }
      : { x: 1, out: -s };
    const d: Affine = { x: (1 - x0.x) / s, out: -x0.out / s }; // (x - x0) / σ
    let down = next, up = 0;
    if (name === "euler_a") {
      up = Math.sqrt(next * next * (s * s - next * next) / (s * s));
      down = Math.sqrt(next * next - up * up);
    }
    return {
      timestep: t,
      scaleIn: 1 / Math.sqrt(s * s + 1),
      a: 1 + (down - s) * d.x,
      b: (down - s) * d.out,
      c: up,
      knownAlpha: 1,
      knownSigma: next,
    };
  });
  const maxSigma = sigma(all[0]);
  const initNoise = config.timestep_spacing === "leading"
    ? Math.sqrt(maxSigma * maxSigma + 1)
    : maxSigma;
  return keep === n
    ? { steps, initAlpha: 0, initSigma: initNoise }
    : { steps, initAlpha: 1, initSigma: ts.length ? sigmas[0] : 0 };
}

import assert from "node:assert/strict";
import { alphasCumprod, plan, SchedulerConfig, SCHEDULERS, timesteps } from "./schedulers.ts";

const sd = SchedulerConfig.parse({ steps_offset: 1 });
const close = (a: number, b: number, tol = 1e-9) =>
  assert.ok(Math.abs(a - b) < tol, `${a} vs ${b}`);

Deno.test("scaled_linear ᾱ matches the hand-derived first values", () => {
  const ac = alphasCumprod(sd);
  close(ac[0], 1 - 0.00085);
  const beta1 = (Math.sqrt(0.00085) + (Math.sqrt(0.012) - Math.sqrt(0.00085)) / 999) ** 2;
  close(ac[1], (1 - 0.00085) * (1 - beta1));
  assert.ok(ac[999] > 0.004 && ac[999] < 0.005); // SD's well-known ᾱ_T ≈ 0.0047
});

Deno.test("timestep spacings follow diffusers' leading, trailing and linspace rules", () => {
  assert.deepEqual(timesteps(sd, 4), [751, 501, 251, 1]);
  assert.deepEqual(timesteps({ ...sd, timestep_spacing: "trailing" }, 4), [999, 749, 499, 249]);
  assert.deepEqual(timesteps({ ...sd, timestep_spacing: "linspace" }, 4), [999, 666, 333, 0]);
  assert.deepEqual(timesteps({ ...sd, timestep_spacing: "trailing" }, 1), [999]);
});

Deno.test("DDIM and Euler steps equal their closed forms", () => {
  const ac = alphasCumprod(sd);
  const ddim = plan("ddim", sd, 4).steps[0];
  const at = ac[751], ap = ac[501];
  close(ddim.a, Math.sqrt(ap / at));
  close(ddim.b, Math.sqrt(1 - ap) - Math.sqrt(ap) * Math.sqrt(1 - at) / Math.sqrt(at));
  assert.equal(ddim.c, 0);
  const euler = plan("euler", sd, 4);
  const s0 = Math.sqrt((1 - at) / at), s1 = Math.sqrt((1 - ap) / ap);
  close(euler.steps[0].a, 1);
  close(euler.steps[0].b, s1 - s0);
  close(euler.steps[0].scaleIn, 1 / Math.sqrt(s0 * s0 + 1));
  close(euler.initSigma, Math.sqrt(s0 * s0 + 1)); // "leading": sqrt(σ_max² + 1)
});

Deno.test("with an oracle noise predictor every scheduler lands exactly on x0", () => {
  const ac = alphasCumprod(sd);
  for (const name of SCHEDULERS) {
    for (const prediction_type of ["epsilon", "v_prediction"] as const) {
      // set_alpha_to_one: DDIM's last step then lands on ᾱ = 1 (SD's configs stop at ᾱ_0).
      const config = { ...sd, prediction_type, set_alpha_to_one: true };
      const p = plan(name, config, 10);
      const x0 = 0.37, z = 1.1; // one latent value and its initial noise
      let x = p.initAlpha * x0 + p.initSigma * z;
      for (const step of p.steps) {
        // The oracle knows x0: recover ε (and v) from the current latent.
        const euler = name.startsWith("euler");
        const a = ac[step.timestep];
        const xt = euler ? x * step.scaleIn : x; // in DDPM space
        const eps = (xt - Math.sqrt(a) * x0) / Math.sqrt(1 - a);
        const out = prediction_type === "epsilon"
          ? eps
          : Math.sqrt(a) * eps - Math.sqrt(1 - a) * x0;
        x = step.a * x + step.b * out + step.c * 0.3; // the fresh noise must not matter at the end
      }
      close(x, x0, 1e-6);
    }
  }
});

Deno.test("img2img: strength 0 runs no step and starts from the input; 0.5 runs half", () => {
  const none = plan("ddim", sd, 10, 0);
  assert.equal(none.steps.length, 0);
  assert.deepEqual([none.initAlpha, none.initSigma], [1, 0]);
  const half = plan("euler", sd, 10, 0.5);
  assert.equal(half.steps.length, 5);
  assert.equal(half.steps[0].timestep, timesteps(sd, 10)[5]);
  assert.equal(half.initAlpha, 1);
});

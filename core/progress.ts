/** A one-line progress bar on stderr for long CLI work (dataset generation, downloads, evals). */
export class ProgressBar {
  #start = performance.now();
  #last = 0;
  constructor(readonly label: string, readonly total: number) {}

  update(done: number, extra = ""): void {
    const now = performance.now();
    if (done < this.total && now - this.#last < 100) return;
    this.#last = now;
    const frac = this.total ? done / this.total : 1;
    const width = 30;
    const bar = "█".repeat(Math.round(frac * width)).padEnd(width, "░");
    const secs = (now - this.#start) / 1000;
    const line = `${this.label} ${bar} ${done}/${this.total} ${(frac * 100).toFixed(0)}% ${
      secs.toFixed(1)
    }s ${extra}`;
    Deno.stderr.writeSync(
      new TextEncoder().encode(`\r${line}\x1b[K${done >= this.total ? "\n" : ""}`),
    );
  }
}

/**
 * Progress of long CLI work on stderr. On a terminal: a one-line bar redrawn in place. Elsewhere (CI logs, a
 * pipe): a plain line `label: done/total (pct%)` at most every CHIMERA_PROGRESS_S seconds (default 10), so a
 * long command is never silent for long and a short one prints nothing.
 */

/** Seconds between plain progress lines when stderr is not a terminal. */
export function progressIntervalMs(): number {
  const s = Number(process.env.CHIMERA_PROGRESS_S);
  return Number.isFinite(s) && s >= 0 && process.env.CHIMERA_PROGRESS_S !== '' ? s * 1000 : 10_000;
}

/** When the last plain line was written (shared by every bar: one clock per process). */
let lastLine = performance.now();

export class ProgressBar {
  private readonly label: string;
  private readonly tty = process.stderr.isTTY === true;
  private readonly interval = progressIntervalMs();
  private last = -1;

  constructor(label: string) {
    this.label = label;
  }

  update(done: number, total: number): void {
    if (total <= 0) return;
    const frac = Math.min(1, Math.max(0, done / total));
    const pct = Math.round(frac * 100);
    if (!this.tty) {
      const now = performance.now();
      if (now - lastLine < this.interval) return;
      lastLine = now;
      process.stderr.write(`${this.label}: ${done}/${total} (${pct}%)\n`);
      return;
    }
    if (pct === this.last) return;
    this.last = pct;
    const width = 30;
    const full = Math.round(frac * width);
    process.stderr.write(`\r${this.label} [${'#'.repeat(full)}${'.'.repeat(width - full)}] ${String(pct).padStart(3)}% (${done}/${total})`);
  }

  done(message?: string): void {
    if (this.tty) process.stderr.write(`\r\x1b[2K`);
    if (message) process.stderr.write(`${message}\n`);
  }
}

/** One progress bar per stage, replaced when the stage changes (assess, eval, quantize). */
export class StagedProgress {
  private bar: ProgressBar | null = null;
  private current = '';

  update(stage: string, done: number, total: number): void {
    if (stage !== this.current) {
      this.bar?.done();
      this.bar = new ProgressBar(stage);
      this.current = stage;
    }
    this.bar!.update(done, total);
  }

  done(message?: string): void {
    this.bar?.done(message);
    if (!this.bar && message) process.stderr.write(`${message}\n`);
    this.bar = null;
    this.current = '';
  }
}

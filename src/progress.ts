/** A one-line progress bar on stderr for long CLI work; silent when stderr is not a terminal. */
export class ProgressBar {
  private readonly label: string;
  private readonly tty = process.stderr.isTTY === true;
  private last = -1;

  constructor(label: string) {
    this.label = label;
  }

  update(done: number, total: number): void {
    if (!this.tty || total <= 0) return;
    const frac = Math.min(1, Math.max(0, done / total));
    const pct = Math.round(frac * 100);
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

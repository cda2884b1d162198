/**
 * Python's float rounding, for numbers written as Python writes them (trainer logs, metric files).
 * @module
 */

/** Python's `round(x, ndigits)` for floats: correctly rounded from the exact binary value, ties to even. */
export function pyRound(x: number, ndigits: number): number {
  if (!Number.isFinite(x) || Math.abs(x) >= 1e21) return x;
  const exact = Math.abs(x).toFixed(100);
  const dot = exact.indexOf(".");
  const tail = exact.slice(dot + 1 + ndigits);
  const tie = tail[0] === "5" && /^0*$/.test(tail.slice(1));
  if (!tie) return Number(x.toFixed(ndigits));
  const truncated = exact.slice(0, dot + 1 + ndigits);
  const lastDigit = Number(truncated.at(-1) === "." ? truncated.at(-2) : truncated.at(-1));
  const down = Number(truncated);
  const up = down + 10 ** -ndigits;
  const r = lastDigit % 2 === 0 ? down : Number(up.toFixed(ndigits));
  return x < 0 ? -r : r;
}

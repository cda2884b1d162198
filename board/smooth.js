/**
 * LLaMA-Factory's loss smoothing (extras/ploting.py `smooth`): an exponential moving average whose weight grows
 * with the number of points, `1.8 * (sigmoid(0.05 * n) - 0.5)`.
 * @module
 */

/**
 * The smoothed series of `scalars`.
 * @param {number[]} scalars
 * @returns {number[]}
 */
export function smooth(scalars) {
  if (scalars.length === 0) return [];
  let last = scalars[0];
  const weight = 1.8 * (1 / (1 + Math.exp(-0.05 * scalars.length)) - 0.5);
  return scalars.map((next) => (last = last * weight + (1 - weight) * next));
}

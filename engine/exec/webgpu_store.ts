/**
 * Moving host bytes into and out of a tensor kept in one buffer range or in several segments
 * (kernels/segments.ts): the segments hold consecutive byte ranges of the tensor, in order.
 * @module
 */

/** A byte range of a buffer (a whole buffer when given as one). */
type Range = GPUBuffer | { readonly buffer: GPUBuffer; readonly offset: number; readonly size: number };

const span = (r: Range) => ("buffer" in r ? r : { buffer: r, offset: 0, size: r.size });

/** Writes `bytes` across `ranges` in order, each taking as many bytes as it holds (the last the rest). */
export function writeSegments(
  device: GPUDevice,
  ranges: readonly Range[],
  bytes: ArrayBuffer | Uint8Array<ArrayBuffer>,
): void {
  let at = 0;
  ranges.forEach((r, i) => {
    const { buffer, offset, size } = span(r);
    const n = i === ranges.length - 1 ? bytes.byteLength - at : Math.min(size, bytes.byteLength - at);
    if (n > 0) device.queue.writeBuffer(buffer, offset, bytes, at, n);
    at += n;
  });
}

/**
 * Appends to `enc` the copies of `ranges` (the first `bytes` bytes across them) into `dst` from `dstOffset`;
 * returns the bytes copied.
 */
export function copySegments(
  enc: GPUCommandEncoder,
  ranges: readonly Range[],
  bytes: number,
  dst: GPUBuffer,
  dstOffset: number,
): number {
  let at = 0;
  for (const r of ranges) {
    const { buffer, offset, size } = span(r);
    const n = Math.min(size, bytes - at);
    if (n <= 0) break;
    enc.copyBufferToBuffer(buffer, offset, dst, dstOffset + at, n);
    at += n;
  }
  return at;
}

/** Reads the first `bytes` bytes across `buffers` back to the host, one mapped buffer per segment. */
export async function readSegments(
  device: GPUDevice,
  buffers: readonly GPUBuffer[],
  bytes: number,
): Promise<ArrayBuffer> {
  const out = new Uint8Array(bytes);
  let at = 0;
  for (const b of buffers) {
    const n = Math.min(b.size, bytes - at);
    if (n <= 0) break;
    const size = Math.ceil(n / 4) * 4;
    const read = device.createBuffer({ size, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST });
    const enc = device.createCommandEncoder();
    enc.copyBufferToBuffer(b, 0, read, 0, size);
    device.queue.submit([enc.finish()]);
    await read.mapAsync(GPUMapMode.READ);
    out.set(new Uint8Array(read.getMappedRange(), 0, n), at);
    read.unmap();
    read.destroy();
    at += n;
  }
  return out.buffer;
}

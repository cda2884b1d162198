/**
 * A PyTorch baseline as a separate process that stays up between rounds (a {@link LineWorker}): the bench starts
 * `bench/<script>` with the configured Python (bench/torch_python.ts) and a JSON argument, waits for its first stdout
 * line (`{"ready": ...}`), then sends one JSON request a line on stdin and reads one JSON answer a line from stdout.
 * Idle, it waits on stdin and costs no CPU, so Whetstone's rounds and PyTorch's can alternate on the same machine.
 * @module
 */
import { LineWorker } from "./line_worker.ts";
import { torchPython } from "./torch_python.ts";

/** A running baseline process. */
export class TorchWorker extends LineWorker {
  /**
   * Starts `bench/<script> '<json arg>'`; undefined (with the reason) when no Python with torch is configured. Throws
   * when the script fails before it is ready (its stderr is inherited, so the traceback shows).
   */
  static async start(script: string, arg: unknown): Promise<TorchWorker | { absent: string }> {
    const py = await torchPython();
    if (!py.ok) return { absent: py.reason };
    const path = new URL(`./${script}`, import.meta.url).pathname;
    const { child, lines, ready } = await LineWorker.spawn(script, py.python, [path, JSON.stringify(arg)]);
    return new TorchWorker(script, child, lines, ready);
  }
}

import { Context } from '@temporalio/activity';

/**
 * Milliseconds between two heartbeats of a stage, well below the shortest stage `heartbeatTimeout` (10 s). The SDK
 * sends at most one heartbeat per 0.8 × `heartbeatTimeout` to the server whatever this interval is.
 */
const KEEPALIVE_INTERVAL_MS = 2000;

/**
 * Heartbeats the current activity now and then every two seconds, repeating the latest details, until `stop()`.
 * Stages heartbeat even while they wait on a single slow call, so a dead worker is noticed within the stage's
 * `heartbeatTimeout` and a cancellation request reaches the stage with the next heartbeat's response.
 */
export class HeartbeatKeepalive {
  private details: unknown;
  private readonly timer: NodeJS.Timeout;

  constructor(
    private readonly context: Context = Context.current(),
    initialDetails?: unknown,
  ) {
    this.details = initialDetails;
    this.send();
    this.timer = setInterval(() => this.send(), KEEPALIVE_INTERVAL_MS);
  }

  /** Records new details, which every later heartbeat carries, and heartbeats with them at once. */
  beat(details: unknown): void {
    this.details = details;
    this.send();
  }

  stop(): void {
    clearInterval(this.timer);
  }

  private send(): void {
    if (this.details === undefined) this.context.heartbeat();
    else this.context.heartbeat(this.details);
  }
}

/** Runs `body` while heartbeating the current activity; `body` may set the details the heartbeats carry. */
export async function withHeartbeats<T>(body: (keepalive: HeartbeatKeepalive) => Promise<T>): Promise<T> {
  const keepalive = new HeartbeatKeepalive();
  try {
    return await body(keepalive);
  } finally {
    keepalive.stop();
  }
}

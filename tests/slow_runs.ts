import type { Feeds, Session } from "../core/sessions.ts";

/**
 * Records the batch size of each of `session`'s runs (`rowsOf` its feeds) and makes each run
 * slow, so that concurrent callers' next steps are surely waiting when it ends: batching tests
 * then never depend on the machine's speed. `restore()` puts the session back.
 */
export function slowRuns(session: Session, rowsOf: (feeds: Feeds) => number, ms = 20) {
  const run = session.run.bind(session);
  const rows: number[] = [];
  session.run = async (feeds, signal) => {
    rows.push(rowsOf(feeds));
    await new Promise((r) => setTimeout(r, ms));
    return run(feeds, signal);
  };
  return { rows, restore: () => void (session.run = run) };
}

// Who acts, for the registry's events and the audit trail, when the caller does not say: the OS user.
import os from 'node:os';

export function defaultActor(): string {
  try {
    return os.userInfo().username;
  } catch {
    // A container user with no passwd entry.
    return process.env['USER'] ?? `uid:${process.getuid?.() ?? 'unknown'}`;
  }
}

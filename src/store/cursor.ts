/**
 * Opaque page cursors, shared by every store: base64url of a JSON
 * [sortKey, tieBreaker] pair. Callers must not read them; a cursor that does
 * not decode to that shape is the caller's error (INVALID_REQUEST).
 */
import { RunnerError } from '../core/errors.ts';
import type { PageRequest } from '../core/ports/store.ts';

export function encodeCursor(sortKey: number, tieBreaker: string | number): string {
  return Buffer.from(JSON.stringify([sortKey, tieBreaker])).toString('base64url');
}

export function decodeCursor<T extends string | number>(cursor: string, tieBreaker: 'string' | 'number'): [number, T] {
  let value: unknown;
  try {
    if (!/^[A-Za-z0-9_-]+$/.test(cursor)) throw new Error('not base64url');
    value = JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8'));
  } catch {
    throw invalidCursor();
  }
  if (
    !Array.isArray(value) || value.length !== 2 ||
    typeof value[0] !== 'number' || !Number.isFinite(value[0]) ||
    typeof value[1] !== tieBreaker ||
    (typeof value[1] === 'number' && !Number.isFinite(value[1]))
  ) {
    throw invalidCursor();
  }
  return [value[0], value[1] as T];
}

/** The page size, checked: a positive integer. */
export function pageLimit(page: PageRequest): number {
  if (!Number.isInteger(page.limit) || page.limit < 1) {
    throw new RunnerError('INVALID_REQUEST', 'The page limit must be a positive integer.');
  }
  return page.limit;
}

function invalidCursor(): RunnerError {
  return new RunnerError('INVALID_REQUEST', 'The page cursor is not valid.');
}

/**
 * What every bench section shares: the one task every path runs (so figures
 * compare), percentiles, and small waits. Owns no measurement of its own.
 */
import { readFileSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { bash, rule, text } from '../src/scripted-model/index.ts';
import type { Rule } from '../src/scripted-model/types.ts';

/** Every path's task: the model calls Bash (`echo measured`), then answers `done`. */
export const TASK_MESSAGE = 'bench-task';
export const TASK_RULES: Rule[] = [rule(TASK_MESSAGE, bash('echo measured'), text('done'))];

export interface Percentiles {
  n: number;
  p50: number;
  p95: number;
  p99: number;
  min: number;
  max: number;
}

/** Nearest-rank percentiles, in the samples' unit, rounded to 0.1. */
export function percentiles(samples: number[]): Percentiles {
  if (samples.length === 0) return { n: 0, p50: NaN, p95: NaN, p99: NaN, min: NaN, max: NaN };
  const sorted = [...samples].sort((a, b) => a - b);
  const at = (q: number): number => round(sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))]!);
  return { n: sorted.length, p50: at(0.5), p95: at(0.95), p99: at(0.99), min: round(sorted[0]!), max: round(sorted.at(-1)!) };
}

export function round(value: number, digits = 1): number {
  const f = 10 ** digits;
  return Math.round(value * f) / f;
}

/** One path's figures: POST /task (or its equivalent) and submit → first `text`. */
export interface PathResult {
  label: string;
  how: string;
  taskMs: Percentiles;
  firstTextMs: Percentiles;
  note?: string;
}

export function pathResult(label: string, how: string, task: number[], firstText: number[], note?: string): PathResult {
  return { label, how, taskMs: percentiles(task), firstTextMs: percentiles(firstText), ...(note ? { note } : {}) };
}

/** Polls until `check` returns a value other than undefined. */
export async function waitFor<T>(what: string, check: () => Promise<T | undefined>, timeoutMs = 60_000, everyMs = 50): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`bench: timed out waiting for ${what}`);
    await sleep(everyMs);
  }
}

/** Busy and total jiffies of all cores so far (/proc/stat); null where there is none. */
function cpuJiffies(): { busy: number; total: number } | null {
  try {
    const fields = readFileSync('/proc/stat', 'utf8').split('\n', 1)[0]!.trim().split(/\s+/).slice(1, 9).map(Number);
    const total = fields.reduce((a, b) => a + b, 0);
    return { busy: total - fields[3]! - fields[4]!, total };
  } catch {
    return null;
  }
}

/**
 * Waits until the machine is quiet (at most 10% of its cores busy over 250 ms), at most `timeoutMs`:
 * so a section or a round does not pay for what the one before left running (containers being
 * removed, processes exiting). False when it gave up: the machine is measured busy (say so).
 */
export async function quietMachine(timeoutMs = 10_000): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  let last = cpuJiffies();
  if (!last) return true;
  while (Date.now() < deadline) {
    await sleep(250);
    const now = cpuJiffies()!;
    const busy = (now.busy - last.busy) / Math.max(1, now.total - last.total);
    last = now;
    if (busy <= 0.1) return true;
  }
  return false;
}

/** Runs `count` loops at once, each calling `body(loop)` `perLoop` times; returns tasks per second of the whole. */
export async function loopsAtOnce(count: number, perLoop: number, body: (loop: number, i: number) => Promise<void>): Promise<{ tasks: number; seconds: number; perSecond: number }> {
  const started = performance.now();
  await Promise.all(Array.from({ length: count }, async (_, loop) => {
    for (let i = 0; i < perLoop; i++) await body(loop, i);
  }));
  const seconds = (performance.now() - started) / 1000;
  return { tasks: count * perLoop, seconds: round(seconds, 2), perSecond: round((count * perLoop) / seconds, 2) };
}

export const MiB = 1024 * 1024;

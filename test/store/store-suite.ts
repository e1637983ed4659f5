/**
 * The behaviour every Store must have, written against the port only: each
 * store's test file calls defineStoreSuite with a way to open a fresh, empty
 * store. Each test gets its own store.
 */
import { afterEach, beforeEach, describe } from 'node:test';
import type { Store } from '../../src/core/ports/store.ts';
import { defineClaimTests } from './suite-claim.ts';
import { defineEventTests } from './suite-events.ts';
import { defineNodeTests } from './suite-nodes.ts';
import { defineSessionTests } from './suite-sessions.ts';
import { defineTaskTests } from './suite-tasks.ts';

export interface OpenedStore {
  store: Store;
  cleanup(): Promise<void>;
}

export type OpenStore = () => Promise<OpenedStore>;

/** Opens a fresh store before each test of the enclosing describe; returns a getter for it. */
export function useStore(open: OpenStore): () => Store {
  let opened: OpenedStore | undefined;
  beforeEach(async () => {
    opened = await open();
  });
  afterEach(async () => {
    await opened?.cleanup();
    opened = undefined;
  });
  return () => {
    if (!opened) throw new Error('no store open');
    return opened.store;
  };
}

export function defineStoreSuite(name: string, open: OpenStore): void {
  describe(`Store contract: ${name}`, () => {
    describe('sessions', () => defineSessionTests(useStore(open)));
    describe('tasks', () => defineTaskTests(useStore(open)));
    describe('claiming and ending tasks', () => defineClaimTests(useStore(open)));
    describe('events', () => defineEventTests(useStore(open)));
    describe('nodes and sticky sessions', () => defineNodeTests(useStore(open)));
  });
}

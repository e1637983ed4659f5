/**
 * The store's statements that are the same in every dialect, built by kysely
 * for each: sessions, tasks, events, nodes and the webhook outbox, over the
 * tables of src/store/schema.ts.
 *
 * Owns: those statements. Must not touch: the choice of a dialect, its
 * connection, schema migrations, nor what a dialect does its own way — how
 * concurrent session creations, submits and claims see each other (SQLite runs
 * one transaction at a time; PostgreSQL locks), which each dialect's folder
 * keeps. Reads no config, emits no events.
 */
import type { Store } from '../../core/ports/store.ts';
import type { Db } from '../schema.ts';
import { appendEvents, eventBounds, readEvents, taskFirstEventSeq, trimEvents } from './events.ts';
import { abortQueuedTasks, finishTask, interruptRunningTasks, recordTaskSpend, recordTaskTool, setPendingInput } from './lifecycle.ts';
import { listNodes, reapExpiredNodes, registerNode, releaseSessions, removeNode, renewNodeLease, sessionOwner } from './nodes.ts';
import {
  deleteSession, findSession, getSessionByKey, listAllSessionKeys, listIdleSessions, listSessions, resetSession, summarizeSession,
} from './sessions.ts';
import { countQueuedTasks, countRunningTasks, getTask, listTasks, oldestUnfinishedTask, queuePosition } from './tasks.ts';

/** What each dialect adds: closing, and the operations whose concurrency is its own. */
export type DialectMethods = 'close' | 'createSession' | 'enqueueTask' | 'claimTasks';

/** Every Store method but the dialect's own, over `db`. */
export function sharedStoreMethods(db: Db): Omit<Store, DialectMethods> {
  return {
    findSession: (tenantId, id) => findSession(db, tenantId, id),
    getSessionByKey: (key) => getSessionByKey(db, key),
    listSessions: (tenantId, page) => listSessions(db, tenantId, page),
    summarizeSession: (key) => summarizeSession(db, key),
    resetSession: (key, at) => resetSession(db, key, at),
    deleteSession: (key) => deleteSession(db, key),
    listIdleSessions: (before) => listIdleSessions(db, before),
    listAllSessionKeys: () => listAllSessionKeys(db),

    getTask: (id) => getTask(db, id),
    listTasks: (sessionKey, page) => listTasks(db, sessionKey, page),
    queuePosition: (task) => queuePosition(db, task),
    countRunningTasks: () => countRunningTasks(db),
    countQueuedTasks: () => countQueuedTasks(db),
    oldestUnfinishedTask: (sessionKey) => oldestUnfinishedTask(db, sessionKey),
    recordTaskSpend: (taskId, spend) => recordTaskSpend(db, taskId, spend),
    recordTaskTool: (taskId, tool) => recordTaskTool(db, taskId, tool),
    setPendingInput: (taskId, pending) => setPendingInput(db, taskId, pending),
    finishTask: (taskId, runnerId, outcome, session) => finishTask(db, taskId, runnerId, outcome, session),
    abortQueuedTasks: (target, error, now) => abortQueuedTasks(db, target, error, now),
    interruptRunningTasks: (runnerId, error, now) => interruptRunningTasks(db, runnerId, error, now),

    registerNode: (node) => registerNode(db, node),
    renewNodeLease: (nodeId, leaseExpiresAt) => renewNodeLease(db, nodeId, leaseExpiresAt),
    listNodes: (now) => listNodes(db, now),
    reapExpiredNodes: (byNodeId, error, now) => reapExpiredNodes(db, byNodeId, error, now),
    removeNode: (nodeId) => removeNode(db, nodeId),
    releaseSessions: (nodeId) => releaseSessions(db, nodeId),
    sessionOwner: (sessionKey) => sessionOwner(db, sessionKey),

    appendEvents: (events, now) => appendEvents(db, events, now),
    readEvents: (sessionKey, afterSeq, limit) => readEvents(db, sessionKey, afterSeq, limit),
    eventBounds: (sessionKey) => eventBounds(db, sessionKey),
    taskFirstEventSeq: (sessionKey, taskId) => taskFirstEventSeq(db, sessionKey, taskId),
    trimEvents: (policy, now) => trimEvents(db, policy, now),
  };
}

export { webhookOutbox } from './webhooks.ts';
export { insertSession } from './sessions.ts';
export { findByIdempotencyKey, insertTask, sameRequest } from './tasks.ts';
export { claimableHeads, markServed, startTasks, type ClaimHead } from './claim.ts';

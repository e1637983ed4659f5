/**
 * The composition root: the only file that picks concrete adapters (SQLite
 * store, Docker sandbox, Claude Code runtime, socket gateway) and wires them
 * into the domain services and the HTTP layer. `createRunner` builds;
 * `start` recovers from a crash and listens; `shutdown` drains and exits.
 */
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import type { FastifyInstance } from 'fastify';
import type { Config } from './config.ts';
import { RunnerError } from './core/errors.ts';
import { newId } from './core/ids.ts';
import { AGENT_GID, AGENT_UID, SANDBOX_CLAUDE_PATH } from './core/ports/sandbox.ts';
import type { Store } from './core/ports/store.ts';
import { EventLog } from './events/event-log.ts';
import { StreamStarts } from './events/stream-starts.ts';
import { SocketModelGateway } from './gateway/gateway.ts';
import { ApiAuth } from './http/auth.ts';
import { buildHttpApp } from './http/app.ts';
import { createLogger, type Logger } from './logger.ts';
import { observedStore, RunnerMetrics } from './metrics/runner-metrics.ts';
import { priceUsage } from './pricing/prices.ts';
import { ClaudeAgentRuntime } from './runtime/claude/runtime.ts';
import { CappedSandboxDriver } from './sandbox/capped-driver.ts';
import { DockerSandboxDriver } from './sandbox/docker/driver.ts';
import { Redactor } from './secrets/redactor.ts';
import { EnvSealer } from './secrets/sealer.ts';
import { CrashRecovery } from './sessions/crash-recovery.ts';
import { ReadyPool } from './sessions/ready-pool.ts';
import { SessionService } from './sessions/session-service.ts';
import { clusterBus, clusterNodeId, joinCluster, type ClusterMember } from './cluster/index.ts';
import { databasePassword, openStore } from './store/open.ts';
import { removeContainersOf } from './sandbox/docker/left-behind.ts';
import { TaskCompletions } from './tasks/completions.ts';
import { QueueAnnouncements } from './tasks/queue-announcements.ts';
import { TaskEndings } from './tasks/task-endings.ts';
import { Scheduler } from './tasks/scheduler.ts';
import { TaskExecution } from './tasks/task-execution.ts';
import { TaskService } from './tasks/task-service.ts';
import { BUILTIN_TEMPLATES_DIR, TemplateCatalog } from './templates/catalog.ts';
import { watchTemplates } from './templates/template-watch.ts';
import { WebhookDispatcher } from './webhooks/dispatcher.ts';
import { WebhookSigner } from './webhooks/signer.ts';
import { WebhookTargets } from './webhooks/targets.ts';
import { taskView } from './http/views.ts';
import { WorkspaceFiles } from './workspace/files.ts';
import { LoopVolumes } from './workspace/loop-volumes.ts';
import { WorkspaceQuota } from './workspace/quota.ts';
import { SessionDirectories } from './workspace/session-dirs.ts';

const HEALTH_CHECK_CACHE_MS = 3_000;
/** A tool retrying a refused connection in a loop must not fill the session's log: past this many, refusals are only logged and counted. */
const MAX_EGRESS_EVENTS_PER_TASK = 100;
/** How often the sandboxes left running between tasks are measured against the disk quota. */
const DISK_SWEEP_MS = 5_000;
/** Ready sessions are made only while the machine has this much memory free (a live agent and its container take ~250 MB). */
const READY_POOL_MIN_FREE_MEMORY = 1024 * 1024 * 1024;

export interface Runner {
  config: Config;
  runnerId: string;
  logger: Logger;
  store: Store;
  http: FastifyInstance;
  tasks: TaskService;
  sessions: SessionService;
  events: EventLog;
  /** Recovers what a crash left, starts the scheduler and timers, listens. Returns the bound address. */
  start(): Promise<string>;
  /** Stops taking tasks, lets running ones finish within the grace period, interrupts the rest, closes. */
  shutdown(): Promise<void>;
}

/** The `claude` executable that came with the Agent SDK, for this machine's platform. */
export function findClaudeExecutable(configured: string | undefined): string {
  if (configured) return configured;
  const require = createRequire(import.meta.url);
  const suffix = process.arch === 'arm64' ? 'arm64' : 'x64';
  for (const name of [`@anthropic-ai/claude-agent-sdk-linux-${suffix}`, `@anthropic-ai/claude-agent-sdk-linux-${suffix}-musl`]) {
    try {
      const path = join(dirname(require.resolve(`${name}/package.json`)), 'claude');
      if (existsSync(path)) return path;
    } catch {
      // not installed for this platform
    }
  }
  throw new Error('The claude executable was not found: run `npm install`, or set CLAUDE_EXECUTABLE (a Linux build, it runs inside the sandbox).');
}

/** fn's answer, asked again at most every `ms`. */
function cachedFor<T>(ms: number, fn: () => Promise<T>): () => Promise<T> {
  let last: { at: number; result: Promise<T> } | undefined;
  return () => {
    if (!last || Date.now() - last.at > ms) last = { at: Date.now(), result: fn() };
    return last.result;
  };
}

function stableRunnerId(config: Config): string {
  if (config.runnerId) return config.runnerId;
  const file = join(config.dataDir, 'runner-id');
  if (!existsSync(file)) writeFileSync(file, newId('r'));
  return readFileSync(file, 'utf8').trim();
}

export async function createRunner(config: Config): Promise<Runner> {
  const redactor = new Redactor();
  redactor.addPermanent(config.upstream.apiKey, config.upstream.oauthToken, config.webhooks.secret, databasePassword(config.databaseUrl),
    ...config.apiKeys.map((k) => k.key));
  const logger = createLogger(config.logLevel, redactor);
  for (const warning of config.warnings) logger.warn(warning);

  // DATA_DIR and its sessions/sockets folders are the runner's alone (0700): they hold every tenant's data and gateway sockets.
  // SANDBOX_DISK_MODE=loop: each workspace a filesystem of SANDBOX_DISK bytes, enforced by the kernel.
  const volumes = config.sandbox.diskMode === 'loop' && config.sandbox.diskBytes > 0
    ? new LoopVolumes(config.sandbox.diskBytes)
    : undefined;
  if (volumes) await LoopVolumes.check();
  const dirs = new SessionDirectories(config.dataDir, volumes);
  dirs.prepare();
  const quota = new WorkspaceQuota(config.sandbox.diskBytes, volumes);
  // PostgreSQL (DATABASE_URL): other nodes share the store, each with its own id (DATA_DIR is shared too).
  const shared = config.databaseUrl !== undefined;
  const runnerId = shared ? clusterNodeId(config.runnerId) : stableRunnerId(config);
  // Before the store opens: a template the operator's caps refuse fails the start with nothing left open.
  const templates = new TemplateCatalog(config.agentDir, config.defaultAgent, BUILTIN_TEMPLATES_DIR, {
    memoryBytes: config.sandbox.memoryBytes,
    cpus: config.sandbox.nanoCpus / 1e9,
    pidsLimit: config.sandbox.pidsLimit,
    taskTimeoutMs: config.limits.taskTimeoutMs,
    budgetUsd: config.limits.taskBudgetUsd,
  });
  const store = await openStore(config);
  const bus = clusterBus(config.databaseUrl, runnerId, logger.child({ component: 'cluster' }));
  let cluster: ClusterMember | undefined;
  const sealer = EnvSealer.fromDataDir(config.dataDir, config.secretKey);
  const files = new WorkspaceFiles();
  const dockerSandbox = new DockerSandboxDriver({
    docker: { socketPath: config.sandbox.dockerSocket },
    runnerId,
    image: config.sandbox.image,
    claudeExecutablePath: findClaudeExecutable(config.claudeExecutable),
    limits: { memoryBytes: config.sandbox.memoryBytes, nanoCpus: config.sandbox.nanoCpus, pidsLimit: config.sandbox.pidsLimit, tmpSizeBytes: config.sandbox.tmpSizeBytes },
    ...(config.sandbox.runtime ? { runtime: config.sandbox.runtime } : {}),
    // The /etc/hosts of none and allowlist sandboxes: where the engine sees the same path, as with the session folders.
    hostsFile: join(config.dataDir, 'sandbox', 'etc-hosts'),
    // Two nodes on one engine: a container of a node that is gone may be replaced by the node running its session now.
    ownerGone: async (owner) => cluster !== undefined && !(await cluster.isLive(owner)),
    logger: logger.child({ component: 'sandbox' }),
  });
  // MAX_RUNNING_SANDBOXES: the least recently used idle sandbox is stopped to make room (see capped-driver.ts).
  const sandbox: CappedSandboxDriver = new CappedSandboxDriver(dockerSandbox, {
    maxRunning: config.limits.maxRunningSandboxes,
    isBusy: (sessionKey): boolean => execution.runningTaskOf(sessionKey) !== undefined,
    isSpare: (sessionKey): boolean => readyPool.isSpare(sessionKey),
    beforeStop: (sessionKey) => runtime.release(sessionKey),
    // A gateway socket lives exactly as long as its sandbox (descriptors do not pile up over sessions).
    afterStop: async (sessionKey) => {
      readyPool.sandboxStopped(sessionKey);
      await gateway.detachSession(sessionKey);
    },
    logger: logger.child({ component: 'sandbox' }),
  });
  // Observes, never changes: fed by the hooks below (stored events, ended tasks, the gateway's observer).
  const metrics: RunnerMetrics = new RunnerMetrics({
    queuedTasks: () => store.countQueuedTasks(),
    runningTasks: (): number => scheduler.runningCount(),
    runningSandboxes: (): Promise<number> => sandbox.runningCount(),
    liveAgents: (): number => runtime.liveSessions().length,
    readySessions: (): number => readyPool.status().ready,
    streamSubscribers: (): number => events.subscriberTotal(),
    agentOf: async (sessionKey) => (await store.getSessionByKey(sessionKey))?.agent,
  });
  const gatewayMetrics = metrics.gatewayObserver();
  const deniedLocalPorts = [config.port];
  const gateway = new SocketModelGateway({
    upstream: config.upstream,
    // The port actually bound is added at listen (PORT=0 picks one).
    deniedLocalPorts,
    priceUsage,
    redactor,
    logger: logger.child({ component: 'gateway' }),
    observer: {
      ...gatewayMetrics,
      // A refusal while a task runs is one of its events: whoever watches the session sees at once why a tool failed.
      egressRefused: (refusal) => {
        gatewayMetrics.egressRefused(refusal);
        if (refusal.taskId === null || refusal.nth > MAX_EGRESS_EVENTS_PER_TASK) return;
        if (refusal.nth === MAX_EGRESS_EVENTS_PER_TASK) logger.warn({ taskId: refusal.taskId }, 'egress refusals: the task\'s next ones are logged and counted, not stored as events');
        events.append(refusal.sessionKey, refusal.taskId, 'egress_refused', { host: refusal.host, port: refusal.port, reason: refusal.reason })
          .catch((error: unknown) => logger.warn({ err: error, taskId: refusal.taskId }, 'could not store an egress refusal'));
      },
    },
  });
  const runtime = new ClaudeAgentRuntime({
    sandbox,
    executablePath: SANDBOX_CLAUDE_PATH,
    maxLiveAgents: config.limits.maxLiveAgents,
    idleMs: config.agentIdleMs,
    modelMaxRetries: config.modelMaxRetries,
    logger: logger.child({ component: 'runtime' }),
  });
  const events = new EventLog(observedStore(store, (stored) => metrics.eventsStored(stored)), redactor, shared ? {
    shared,
    onStored: (sessionKey, lastSeq) => void bus.notify({ kind: 'events', sessionKey, lastSeq }).catch(() => undefined),
  } : {});
  const completions = new TaskCompletions();
  const announcements = new QueueAnnouncements(shared ? async (task) => (await store.taskFirstEventSeq(task.sessionKey, task.id)) !== null : undefined);
  const sharedBus = shared ? { bus } : {};
  const endings = new TaskEndings(events, completions, logger.child({ component: 'tasks' }));
  const execution = new TaskExecution({
    store, events, sandbox, runtime, gateway, templates, dirs, quota,
    sealer, redactor, completions, endings, announcements, runnerId, ...sharedBus,
    defaults: {
      model: config.model,
      maxTurns: config.maxTurns,
      timeoutMs: config.limits.taskTimeoutMs,
      taskBudgetUsd: config.limits.taskBudgetUsd,
      sessionBudgetUsd: config.limits.sessionBudgetUsd,
      network: config.sandbox.defaultNetwork,
      diskPollMs: 2000,
      inputTimeoutMs: config.inputTimeoutMs,
    },
    logger: logger.child({ component: 'tasks' }),
  });
  const scheduler = new Scheduler({
    // No more tasks at once than sandboxes may run: the rest wait in their queues, not for a sandbox.
    store, runnerId, maxConcurrent: Math.min(config.limits.maxConcurrentTasks, config.limits.maxRunningSandboxes || Infinity),
    execution, logger,
    // Ready sessions are made only while nothing runs: the end of a task is when to look.
    onTaskDone: () => readyPool.taskEnded(),
  });
  // Ready sessions: sandbox up and `claude` waiting before anyone asks; refilled only when nothing runs here.
  const readyPool: ReadyPool = new ReadyPool({
    templates, dirs, sandbox, gateway, runtime,
    defaults: { model: config.model, network: config.sandbox.defaultNetwork },
    size: config.limits.readyPoolSize,
    maxLiveAgents: config.limits.maxLiveAgents,
    isBusy: async () => scheduler.runningCount() > 0 || (await store.countQueuedTasks()) > 0,
    minFreeMemoryBytes: READY_POOL_MIN_FREE_MEMORY,
    logger: logger.child({ component: 'ready-pool' }),
  });
  const sessions = new SessionService({
    // Ready sessions are one node's: with several, a new session's first task may run on any node, so there are none.
    store, events, sandbox, runtime, templates, dirs, quota, ...(shared ? {} : { readySessions: readyPool }),
    // `tasks` is built below; reset and delete call this only once requests flow.
    stopTasks: async (sessionKey) => {
      await tasks.abortSessionByKey(sessionKey, new RunnerError('TASK_ABORTED', 'The session was reset or deleted.'));
    },
    maxSessions: config.limits.maxSessions, idleTimeoutMs: config.idleTimeoutMs, logger: logger.child({ component: 'sessions' }), ...sharedBus,
  });
  // Webhooks: a task's end is delivered from the store's outbox, apart from the task and its answer (src/webhooks).
  const webhookTargets = new WebhookTargets({ configured: config.webhooks.secret !== undefined, allowPrivate: config.webhooks.allowPrivate, templates });
  const webhooks = new WebhookDispatcher({
    outbox: store.webhookOutbox,
    signer: config.webhooks.secret === undefined ? undefined : new WebhookSigner(config.webhooks.secret),
    render: taskView,
    timeoutMs: config.webhooks.timeoutMs,
    retryScheduleMs: config.webhooks.retryScheduleMs,
    allowPrivate: config.webhooks.allowPrivate,
    logger: logger.child({ component: 'webhooks' }),
  });
  let accepting = true;
  const tasks = new TaskService({
    store, events, sessions, scheduler, execution, completions, endings, announcements, sealer, redactor, ...sharedBus,
    maxQueuedPerSession: config.limits.maxQueuedPerSession,
    templates,
    taskLimits: { maxTurns: config.maxTurns, timeoutMs: config.limits.taskTimeoutMs, budgetUsd: config.limits.taskBudgetUsd },
    webhooks: webhookTargets,
    isAccepting: () => accepting,
  });

  completions.onEnd((task) => metrics.taskEnded(task));
  completions.onEnd((task) => {
    if (task.options.webhookUrl && bus.isLeader()) webhooks.wake();
    // Callers waiting on other nodes; the leader delivers its webhook.
    if (shared) bus.notify({ kind: 'ended', taskId: task.id }).catch(() => undefined);
  });

  // /health is open and not rate limited: the Docker engine is asked at most every few seconds.
  // /health is open: it names the code only; the engine's message (socket paths and the like) goes to the log.
  const dockerHealth = cachedFor(HEALTH_CHECK_CACHE_MS, () => sandbox.check().then(() => 'ok', (error: unknown) => {
    logger.warn({ err: error }, 'health: the sandbox backend is not ready');
    return error instanceof RunnerError ? error.code : 'unavailable';
  }));
  // The engine is asked for its containers at most every few seconds too (the dashboard polls /health).
  const runningSandboxes = cachedFor(HEALTH_CHECK_CACHE_MS, () => sandbox.runningCount().catch(() => null));

  // Stream tokens are signed with a key derived from the sealing key: every node sharing RUNNER_SECRET_KEY (or DATA_DIR) accepts them.
  const auth = new ApiAuth(config.apiKeys, sealer.subKey('claude-runner stream tokens v1'));
  const http = await buildHttpApp({
    tasks, sessions, events, streamStarts: new StreamStarts(store), files, auth, logger,
    bodyLimitBytes: config.limits.bodyLimitBytes,
    fileUploadLimitBytes: config.limits.fileUploadLimitBytes,
    streamBufferBytes: config.events.streamBufferBytes,
    rateLimitPerMinute: config.limits.rateLimitPerMinute,
    allowedHosts: config.allowedHosts,
    corsOrigins: config.corsOrigins,
    workspaceOwner: process.getuid?.() === 0 ? { uid: AGENT_UID, gid: AGENT_GID } : undefined,
    health: async () => {
      const docker = await dockerHealth();
      return {
        status: docker === 'ok' && accepting ? 'ok' : 'degraded',
        docker,
        accepting,
        runnerId,
        runningTasks: scheduler.runningCount(),
        liveAgents: runtime.liveSessions().length,
        runningSandboxes: docker === 'ok' ? await runningSandboxes() : null,
        agents: templates.names(),
        readyPool: readyPool.status(),
        uptime: Math.round(process.uptime()),
      };
    },
    metrics: () => metrics.scrape(),
    webhookOutbox: store.webhookOutbox,
  });

  const timers: NodeJS.Timeout[] = [];
  let stopWatchingTemplates = (): void => {};
  const recovery = new CrashRecovery({ store, endings, sandbox, dirs, ...(shared ? { nodeId: runnerId } : {}), logger: logger.child({ component: 'recovery' }) });

  return {
    config, runnerId, logger, store, http, tasks, sessions, events,
    async start() {
      await webhookTargets.checkTemplates();
      if (shared) {
        cluster = await joinCluster({
          bus, store, events, completions, endings, scheduler, execution, sessions,
          address: `${hostname()}:${config.port}`, dataDir: config.dataDir, leaseMs: config.nodeLeaseMs,
          removeSandboxesOf: async (nodeId, createdBefore) => void (await removeContainersOf(dockerSandbox.docker, nodeId, createdBefore)),
          releaseEverything: async () => {
            await runtime.closeAll();
            await Promise.all((await sandbox.list()).map((s) => sandbox.remove(s.sessionKey)));
          },
          interruptOwnTasks: () => recovery.interruptTasks(),
          wakeWebhooks: () => webhooks.wake(),
          logger: logger.child({ component: 'cluster' }),
        });
      }
      await recovery.run();
      scheduler.start();
      // After recovery: ready sessions of an earlier run were removed with the other orphans.
      const pooled = shared ? [] : templates.names().filter((name) => readyPool.sizeOf(name) > 0);
      stopWatchingTemplates = watchTemplates({
        folders: new Map(pooled.map((name) => [name, templates.get(name).dir])),
        onChange: (name) => readyPool.templateChanged(name),
        logger,
      });
      if (!shared) readyPool.wake();
      // Once per cluster: the leader delivers webhooks and trims events (with SQLite, this runner).
      if (bus.isLeader()) webhooks.start();
      bus.onLeadership((leader) => void (leader ? webhooks.start() : webhooks.stop()));
      timers.push(setInterval(() => void sessions.stopIdle().catch((error) => logger.error({ err: error }, 'idle sweep failed')),
        config.idleSweepMs));
      if (config.sandbox.diskBytes > 0) {
        timers.push(setInterval(() => void sessions.stopOverQuota().catch((error) => logger.error({ err: error }, 'disk quota sweep failed')),
          DISK_SWEEP_MS));
      }
      const trim = (): void => void (bus.isLeader() ? store.trimEvents({ maxEventsPerSession: config.events.maxPerSession, maxEventAgeMs: config.events.maxAgeMs }, Date.now())
        .then(() => undefined, (error: unknown) => logger.error({ err: error }, 'event retention failed')) : undefined);
      trim();
      timers.push(setInterval(trim, config.events.trimIntervalMs));
      // Queued tasks wait for a slot; a poke now and then also covers a missed wake-up.
      timers.push(setInterval(() => scheduler.poke(), 5_000));
      for (const timer of timers) timer.unref();
      // An `open` sandbox reaches every address of the host: its connections are refused before a byte is read.
      http.server.on('connection', (socket: import('node:net').Socket) => {
        if (dockerSandbox.isSandboxAddress(socket.remoteAddress)) socket.destroy();
      });
      const address = await http.listen({ port: config.port, host: config.host });
      const bound = http.server.address();
      if (bound && typeof bound === 'object') deniedLocalPorts.push(bound.port);
      logger.info({ address, runnerId, agents: templates.names(), auth: auth.enabled }, 'claude-runner listening');
      return address;
    },
    async shutdown() {
      accepting = false;
      scheduler.stop();
      for (const timer of timers) clearInterval(timer);
      logger.info({ runnerId, running: scheduler.runningCount(), graceMs: config.shutdownGraceMs }, 'shutting down: waiting for running tasks');
      const drained = await scheduler.drain(config.shutdownGraceMs);
      if (!drained) await execution.stopAll(new RunnerError('TASK_INTERRUPTED', 'The server shut down before the task ended.'));
      await events.settle();
      await webhooks.stop();
      await http.close();
      stopWatchingTemplates();
      await readyPool.close();
      await runtime.closeAll();
      await gateway.close();
      dockerSandbox.close();
      // Its sessions are released: another node runs their next task.
      await cluster?.leave().catch((error: unknown) => logger.warn({ err: error }, 'could not leave the cluster cleanly'));
      await store.close();
    },
  };
}

/**
 * What the API answers, as zod schemas: the OpenAPI document's response
 * bodies and the client's return types. src/http/views.ts builds these
 * shapes from the domain's objects; the seed's fields keep their names.
 */
import { z } from 'zod';
import { errorTable, type ErrorCode } from '../core/errors.ts';
import { taskStatuses } from '../core/task-status.ts';

const timestamp = z.string().describe('ISO 8601');
const errorCodes = Object.keys(errorTable) as [ErrorCode, ...ErrorCode[]];

export const ErrorCodeSchema = z.enum(errorCodes).meta({ id: 'ErrorCode' });

export const ErrorBodySchema = z.object({
  code: ErrorCodeSchema,
  message: z.string(),
  details: z.unknown().optional().describe('Machine-readable particulars; `reference` for the opaque codes (the server log has the rest).'),
}).meta({ id: 'ErrorBody' });

/** Every error answer: `{error: {code, message}}`, sometimes with fields of the task it concerns. */
export const ErrorResponse = z.object({ error: ErrorBodySchema }).catchall(z.unknown()).meta({ id: 'ErrorResponse' });

export const TaskStatusSchema = z.enum(taskStatuses).meta({ id: 'TaskStatus' });

export const TokenUsageSchema = z.object({
  inputTokens: z.number(),
  outputTokens: z.number(),
  cacheCreationInputTokens: z.number(),
  cacheReadInputTokens: z.number(),
}).meta({ id: 'TokenUsage' });

export const InputQuestionSchema = z.object({
  question: z.string(),
  header: z.string(),
  options: z.array(z.object({ label: z.string(), description: z.string() })),
  multiSelect: z.boolean(),
}).meta({ id: 'InputQuestion' });

export const PendingInputSchema = z.object({
  requestId: z.string(),
  kind: z.enum(['question', 'permission']),
  questions: z.array(InputQuestionSchema).optional(),
  tool: z.string().optional(),
  input: z.unknown(),
  expiresAt: timestamp,
}).meta({ id: 'PendingInput' });

export const TaskViewSchema = z.object({
  taskId: z.string(),
  sessionId: z.string(),
  status: TaskStatusSchema,
  output: z.unknown().describe('The agent\'s answer: JSON per OUTPUT.md or the output schema, or text; null until it succeeds.'),
  cost: z.number().describe('USD'),
  duration: z.number().describe('ms'),
  tools: z.array(z.string()).describe('The tools the agent called, in order of first use.'),
  resumed: z.boolean(),
  error: ErrorBodySchema.nullable(),
  message: z.string(),
  context: z.string().nullable(),
  usage: TokenUsageSchema.nullable().describe('Tokens used; null until the task runs.'),
  pendingInput: z.array(PendingInputSchema).describe('What the agent waits for a person to answer (status awaiting_input); empty otherwise.'),
  createdAt: timestamp,
  startedAt: timestamp.nullable(),
  finishedAt: timestamp.nullable(),
}).meta({ id: 'Task' });

/** The blocking POST /task answer: exactly the seed's fields, plus status. */
export const TaskResultSchema = z.object({
  taskId: z.string(),
  sessionId: z.string(),
  output: z.unknown(),
  cost: z.number(),
  duration: z.number(),
  tools: z.array(z.string()),
  resumed: z.boolean(),
  status: TaskStatusSchema,
}).meta({ id: 'TaskResult' });

/** What POST /task answers when the task has not ended (wait: false). */
export const TaskAcceptedSchema = z.object({
  taskId: z.string(),
  sessionId: z.string(),
  status: TaskStatusSchema,
}).meta({ id: 'TaskAccepted' });

export const TaskPageSchema = z.object({
  tasks: z.array(TaskViewSchema),
  nextCursor: z.string().nullable(),
}).meta({ id: 'TaskPage' });

export const SessionViewSchema = z.object({
  sessionId: z.string(),
  agent: z.string(),
  state: z.enum(['idle', 'queued', 'busy']),
  busy: z.boolean().describe('The seed\'s field: a task is running.'),
  queueDepth: z.number().int(),
  turns: z.number().int(),
  totalCost: z.number().describe('USD, all tasks of the session'),
  agentLive: z.boolean().describe('A live agent process holds the conversation (the next task starts without a cold start).'),
  createdAt: timestamp,
  lastActivity: timestamp.nullable(),
  lastTaskId: z.string().nullable().optional().describe('Only in GET /session/:id.'),
}).meta({ id: 'Session' });

export const SessionResetSchema = SessionViewSchema.extend({ reset: z.literal(true) }).meta({ id: 'SessionReset' });

export const SessionDeletedSchema = z.object({ sessionId: z.string(), deleted: z.literal(true) }).meta({ id: 'SessionDeleted' });

export const SessionAbortSchema = z.object({
  sessionId: z.string(),
  aborted: z.boolean(),
  runningTaskId: z.string().nullable(),
  queuedTaskIds: z.array(z.string()),
  message: z.string(),
}).meta({ id: 'SessionAbort' });

export const FileEntrySchema = z.object({
  path: z.string().describe('Relative to the workspace root'),
  type: z.enum(['file', 'directory', 'symlink']),
  size: z.number().int(),
  modifiedAt: z.number().describe('ms since the epoch'),
}).meta({ id: 'FileEntry' });

export const FileListSchema = z.object({ sessionId: z.string(), files: z.array(FileEntrySchema) }).meta({ id: 'FileList' });
export const FileWrittenSchema = z.object({ sessionId: z.string(), path: z.string(), size: z.number().int() }).meta({ id: 'FileWritten' });
export const FileDeletedSchema = z.object({ sessionId: z.string(), path: z.string(), deleted: z.literal(true) }).meta({ id: 'FileDeleted' });

export const StreamTokenSchema = z.object({
  token: z.string().describe('Pass as ?token= to a stream route (WS or SSE).'),
  expiresAt: timestamp,
}).meta({ id: 'StreamToken' });

export const HealthSchema = z.object({
  status: z.enum(['ok', 'degraded']),
  docker: z.string().describe('"ok", or the error code of the sandbox backend'),
  accepting: z.boolean(),
  runnerId: z.string(),
  runningTasks: z.number().int(),
  liveAgents: z.number().int(),
  runningSandboxes: z.number().int().nullable().describe('Containers of this runner that run (null while the engine is unreachable).'),
  agents: z.array(z.string()),
  readyPool: z.object({
    size: z.number().int().describe('Ready sessions wanted, all agent templates together (READY_POOL_SIZE each, or their runner.json readyPool).'),
    ready: z.number().int().describe('Ready sessions a new session can claim now: sandbox running, `claude` started and waiting.'),
  }),
  uptime: z.number().describe('s'),
}).catchall(z.unknown()).meta({ id: 'Health' });

export const WebhookAttemptSchema = z.object({
  at: z.string().describe('ISO 8601 time the attempt began.'),
  statusCode: z.number().int().nullable().describe('The receiver\'s HTTP status; null when no answer came.'),
  error: z.string().nullable().describe('Why no answer came (timeout, connection refused, target refused).'),
  durationMs: z.number().int(),
}).meta({ id: 'WebhookAttempt' });

export const WebhookDeliverySchema = z.object({
  webhookId: z.string().nullable().describe('The `webhook-id` header (msg_…), the same on every retry; null before the first attempt.'),
  url: z.string(),
  type: z.enum(['task.succeeded', 'task.failed', 'task.aborted', 'task.interrupted']).nullable(),
  status: z.enum(['pending', 'delivered', 'failed']),
  attempts: z.array(WebhookAttemptSchema),
  nextAttemptAt: z.string().nullable().describe('When the next attempt is due; null once delivered or failed, and while the task has not ended.'),
}).meta({ id: 'WebhookDelivery' });

export const WebhookDeliveryListSchema = z.object({
  taskId: z.string(),
  deliveries: z.array(WebhookDeliverySchema),
}).meta({ id: 'WebhookDeliveryList' });

export type TaskView = z.infer<typeof TaskViewSchema>;
export type TaskResult = z.infer<typeof TaskResultSchema>;
export type TaskAccepted = z.infer<typeof TaskAcceptedSchema>;
export type TaskPage = z.infer<typeof TaskPageSchema>;
export type SessionView = z.infer<typeof SessionViewSchema>;
export type SessionReset = z.infer<typeof SessionResetSchema>;
export type SessionDeleted = z.infer<typeof SessionDeletedSchema>;
export type SessionAbort = z.infer<typeof SessionAbortSchema>;
export type FileEntry = z.infer<typeof FileEntrySchema>;
export type FileList = z.infer<typeof FileListSchema>;
export type FileWritten = z.infer<typeof FileWrittenSchema>;
export type FileDeleted = z.infer<typeof FileDeletedSchema>;
export type StreamToken = z.infer<typeof StreamTokenSchema>;
export type Health = z.infer<typeof HealthSchema>;
export type ErrorBody = z.infer<typeof ErrorBodySchema>;
export type WebhookDeliveryList = z.infer<typeof WebhookDeliveryListSchema>;

/**
 * The API's wire contract: request and response bodies and stream frames as
 * zod schemas. Owns the shapes only; routes (src/http) validate and document
 * with them, the client (src/client) takes its types from them. Must not
 * import the HTTP layer, the store or any adapter.
 */
export * from './requests.ts';
export * from './responses.ts';
export * from './events.ts';

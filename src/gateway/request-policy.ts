/**
 * What a Messages API request may make Anthropic do on the agent's behalf.
 * Server tools (web search, web fetch, code execution...), MCP servers, a
 * code-execution container and URL sources (Anthropic fetches the image or
 * document) all reach the network from Anthropic's side: under the `none` and
 * `allowlist` policies they would be a way around the sandbox's own network
 * policy, so such requests are refused. Claude Code's own tools carry no
 * `type` (or `custom`); Anthropic-defined client tools (bash, text editor,
 * computer, memory) run in the sandbox and pass.
 */

const CLIENT_TOOL_TYPE = /^(?:custom|(?:bash|text_editor|computer|memory)_\d{8})$/;

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** Why the request would reach the network from Anthropic's side, or null when it would not. */
export function serverSideNetworkUse(body: unknown): string | null {
  if (!isRecord(body)) return null;
  if (Array.isArray(body.tools)) {
    for (const tool of body.tools) {
      if (isRecord(tool) && tool.type !== undefined && !(typeof tool.type === 'string' && CLIENT_TOOL_TYPE.test(tool.type))) {
        return `the server tool ${JSON.stringify(tool.type)} is not allowed`;
      }
    }
  }
  if (body.mcp_servers !== undefined && body.mcp_servers !== null && !(Array.isArray(body.mcp_servers) && body.mcp_servers.length === 0)) {
    return 'mcp_servers is not allowed';
  }
  if (body.container !== undefined && body.container !== null) return 'container is not allowed';
  // Iterative: a hostile body may nest deeper than the stack.
  const stack: unknown[] = [body.messages, body.system];
  while (stack.length > 0) {
    const value = stack.pop();
    if (Array.isArray(value)) {
      for (const item of value) if (typeof item === 'object' && item !== null) stack.push(item);
    } else if (isRecord(value)) {
      if (isRecord(value.source) && value.source.type === 'url') {
        return `${typeof value.type === 'string' ? value.type : 'content'} blocks with a URL source are not allowed (Anthropic would fetch it)`;
      }
      for (const item of Object.values(value)) if (typeof item === 'object' && item !== null) stack.push(item);
    }
  }
  return null;
}

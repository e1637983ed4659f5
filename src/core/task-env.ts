/**
 * Rules for a task's `env`: variables for the agent's tools (API tokens, URLs).
 * They may not change how programs are loaded or how the runtime behaves
 * (loader, shell start-up, proxy, Claude Code's own settings), and may not
 * smuggle a second variable through a newline.
 */
import { RunnerError } from './errors.ts';

const NAME = /^[A-Za-z_][A-Za-z0-9_]{0,127}$/;
const MAX_VARIABLES = 100;
const MAX_VALUE_BYTES = 32 * 1024;

const RESERVED_NAMES = new Set([
  'PATH', 'HOME', 'USER', 'LOGNAME', 'SHELL', 'LANG', 'PWD', 'OLDPWD', 'TMPDIR', 'IFS', 'ENV', 'BASH_ENV', 'CDPATH',
  'PROMPT_COMMAND', 'PS4', 'SHELLOPTS', 'BASHOPTS', 'GLOBIGNORE', 'NODE_OPTIONS', 'NODE_PATH', 'NODE_EXTRA_CA_CERTS',
  'GCONV_PATH', 'HOSTALIASES', 'LOCALDOMAIN', 'RES_OPTIONS', 'SSL_CERT_FILE', 'SSL_CERT_DIR', 'CURL_CA_BUNDLE',
  'PYTHONPATH', 'PYTHONSTARTUP', 'PYTHONHOME', 'PERL5LIB', 'PERL5OPT', 'RUBYOPT', 'RUBYLIB', 'JAVA_TOOL_OPTIONS',
  'HTTP_PROXY', 'HTTPS_PROXY', 'ALL_PROXY', 'NO_PROXY', 'FTP_PROXY', 'IS_SANDBOX', 'DEBUG',
  // Programs that tools start on their own (git, ssh, pagers, editors), and TLS checks of the runtime.
  'GIT_SSH', 'GIT_SSH_COMMAND', 'GIT_ASKPASS', 'SSH_ASKPASS', 'GIT_EXEC_PATH', 'GIT_PROXY_COMMAND', 'GIT_PAGER', 'GIT_EDITOR',
  'PAGER', 'MANPAGER', 'EDITOR', 'VISUAL', 'TMP', 'TEMP', 'NODE_TLS_REJECT_UNAUTHORIZED',
  // Set by the runner for the agent process.
  'DISABLE_AUTOUPDATER', 'DISABLE_TELEMETRY', 'DISABLE_ERROR_REPORTING',
]);
const RESERVED_PREFIXES = ['LD_', 'DYLD_', 'ANTHROPIC_', 'CLAUDE_', 'BUN_', 'GIT_CONFIG', 'BASH_FUNC_', 'LC_', 'MALLOC_', 'XDG_', 'OTEL_', 'MCP_'];

export function isReservedEnvName(name: string): boolean {
  const upper = name.toUpperCase();
  return RESERVED_NAMES.has(upper) || RESERVED_PREFIXES.some((prefix) => upper.startsWith(prefix));
}

/** Returns the env as a plain string map, or throws INVALID_ENV saying which variable and why. */
export function validateTaskEnv(env: unknown): Record<string, string> {
  if (env === undefined || env === null) return {};
  if (typeof env !== 'object' || Array.isArray(env)) throw new RunnerError('INVALID_ENV', 'env must be an object of string values.');
  const entries = Object.entries(env as Record<string, unknown>);
  if (entries.length > MAX_VARIABLES) throw new RunnerError('INVALID_ENV', `env may hold at most ${MAX_VARIABLES} variables.`);
  const out: Record<string, string> = {};
  for (const [name, value] of entries) {
    if (!NAME.test(name)) {
      throw new RunnerError('INVALID_ENV', `env name "${name.slice(0, 64)}" is not allowed: use letters, digits and "_", not starting with a digit.`);
    }
    if (isReservedEnvName(name)) throw new RunnerError('INVALID_ENV', `env name ${name} is reserved by the runner.`);
    if (typeof value !== 'string') throw new RunnerError('INVALID_ENV', `env ${name} must be a string.`);
    if (/[\0\r\n]/.test(value)) throw new RunnerError('INVALID_ENV', `env ${name} may not contain NUL or newline characters.`);
    if (Buffer.byteLength(value) > MAX_VALUE_BYTES) throw new RunnerError('INVALID_ENV', `env ${name} is longer than ${MAX_VALUE_BYTES} bytes.`);
    out[name] = value;
  }
  return out;
}

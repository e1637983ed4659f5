/** The Docker sandbox adapter: see driver.ts for what this folder owns. */
export { DockerSandboxDriver, DEFAULT_IMAGE, parseCounterFiles, type DockerSandboxDriverOptions, type SandboxLogger, type SandboxLimits } from './driver.ts';
export {
  buildContainerSpec,
  containerName,
  specHash,
  relayCommand,
  LABELS,
  RELAY_PORT,
  OPEN_NETWORK,
  AGENT_UID,
  AGENT_GID,
  RELAY_UID,
  RELAY_GID,
  SANDBOX_WORKSPACE,
  SANDBOX_HOME,
  SANDBOX_GATEWAY_DIR,
  SANDBOX_GATEWAY_SOCKET,
  SANDBOX_CLAUDE_PATH,
  type ContainerConfig,
} from './container-spec.ts';
export { toRunnerError } from './errors.ts';
export { buildSandboxImage, ensureSandboxImage, DEFAULT_SANDBOX_IMAGE, OFFLINE_BASE_IMAGE } from './image.ts';

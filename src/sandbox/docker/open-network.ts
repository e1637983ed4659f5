/**
 * The Docker network of `open` sandboxes and the firewall of the runner's API
 * against it. The network is a bridge with inter-container traffic off
 * (openNetworkCreateOptions in container-spec.ts), created when missing and
 * refused (fail closed) when one of that name is made otherwise. Its subnets
 * are learnt when it is loaded (check(), or the first `open` sandbox): an
 * `open` sandbox reaches every address of the host, so the runner refuses
 * connections from those subnets to its API (isSandboxAddress), except from
 * the host's own addresses on that network (its gateways).
 */
import { BlockList, isIPv6 } from 'node:net';
import type Docker from 'dockerode';
import { RunnerError } from '../../core/errors.ts';
import { ICC_OPTION, openNetworkCreateOptions } from './container-spec.ts';
import { isConflict, isNotFound } from './errors.ts';
import type { SandboxLogger } from './exec-process.ts';

export interface OpenNetworkOptions {
  docker: Docker;
  /** The network's name. */
  name: string;
  runnerId: string;
  logger: SandboxLogger;
  /** Maps a Docker error to a RunnerError. */
  toError(error: unknown, action: string, sessionKey?: string): RunnerError;
}

export class OpenNetwork {
  readonly name: string;
  #options: OpenNetworkOptions;
  /** Subnets of the open network, known before any `open` sandbox starts (kept if it is made again with others). */
  #subnets = new BlockList();
  /** The host's own addresses on that network (its gateways): the host itself may connect from them. */
  #gateways = new Set<string>();
  #loaded = false;
  /** The one load of the open network in flight (concurrent ensures share it). */
  #loading: Promise<void> | null = null;

  constructor(options: OpenNetworkOptions) {
    this.name = options.name;
    this.#options = options;
  }

  /** True once the network's subnets are known. */
  get loaded(): boolean {
    return this.#loaded;
  }

  /**
   * True for an address on the Docker network of `open` sandboxes. The runner
   * refuses connections from there to its API: an `open` sandbox reaches every
   * address of the host (its gateway, 172.17.0.1, ...), so a listen on 0.0.0.0
   * would otherwise be one hop away. Known from check() when the network
   * exists, else from the first `open` sandbox on (none runs before).
   */
  isSandboxAddress(address: string | undefined): boolean {
    if (!address || !this.#loaded) return false;
    const plain = address.toLowerCase().startsWith('::ffff:') && address.includes('.') ? address.slice(7) : address;
    // Sandboxes cannot forge the gateway's address: they have no CAP_NET_RAW.
    if (this.#gateways.has(plain)) return false;
    return this.#subnets.check(plain, isIPv6(plain) ? 'ipv6' : 'ipv4');
  }

  /** Makes sure the open network exists and its subnets are known; again (reload) after it went missing. */
  ready(sessionKey: string, reload = false): Promise<void> {
    if (this.#loaded && !reload) return Promise.resolve();
    this.#loading ??= this.load(sessionKey, true).finally(() => {
      this.#loading = null;
    });
    return this.#loading;
  }

  /** Inspects (and with `create`, creates when missing) the open network, and learns its subnets. */
  async load(sessionKey: string | undefined, create: boolean): Promise<void> {
    const { docker, name, runnerId, logger, toError } = this.#options;
    const inspect = () => docker.getNetwork(name).inspect() as Promise<Docker.NetworkInspectInfo>;
    let info: Docker.NetworkInspectInfo;
    try {
      info = await inspect();
    } catch (error) {
      if (!isNotFound(error)) throw toError(error, `inspect the Docker network "${name}"`, sessionKey);
      if (!create) return;
      try {
        await docker.createNetwork(openNetworkCreateOptions(name, runnerId));
        logger.info({ network: name }, 'sandbox: created the Docker network of open sandboxes');
      } catch (createError) {
        // a conflict: another runner created it meanwhile, use theirs
        if (!isConflict(createError)) throw toError(createError, `create the Docker network "${name}"`, sessionKey);
      }
      try {
        info = await inspect();
      } catch (inspectError) {
        throw toError(inspectError, `inspect the Docker network "${name}"`, sessionKey);
      }
    }
    // Fail closed: a network of that name made otherwise could let sandboxes of different sessions talk.
    if (info.Driver !== 'bridge' || info.Options?.[ICC_OPTION] !== 'false') {
      throw new RunnerError(
        'SANDBOX_UNAVAILABLE',
        `The Docker network "${name}" exists but is not a bridge with ${ICC_OPTION}=false, so open sandboxes could reach each other: remove it (docker network rm ${name}) and the runner creates it.`,
      );
    }
    const configs = info.IPAM?.Config ?? [];
    const subnets = configs.map((c) => c.Subnet).filter((s): s is string => Boolean(s));
    // Fail closed: an open sandbox whose addresses the runner cannot tell apart could reach its API.
    if (subnets.length === 0) throw new RunnerError('SANDBOX_UNAVAILABLE', `The Docker network "${name}" has no subnet: open sandboxes cannot be told apart.`);
    this.#gateways = new Set(configs.map((c) => c.Gateway).filter((g): g is string => Boolean(g)));
    for (const subnet of subnets) {
      const [network, prefix] = subnet.split('/');
      this.#subnets.addSubnet(network!, Number(prefix), isIPv6(network!) ? 'ipv6' : 'ipv4');
    }
    this.#loaded = true;
    logger.info({ network: name, subnets }, 'sandbox: connections from open sandboxes to the runner are refused');
  }
}
